//! The API description against the server. `/openapi.json` is generated from the routes and
//! their types; schemathesis (`tests/schemathesis/`) runs every check on every operation,
//! in open mode and with principals as an admin, and finds the server doing what the
//! description says: no schema-valid request refused outside the documented rules, no
//! invalid one accepted, no undocumented status, content type or body, no route that ignores
//! its declared security. The description with principals is the one checked in
//! (`docs/openapi.json`).

use std::{path::Path, process::Command};

use gata_tests::{Gata, principals_env};
use serde_json::Value;

use crate::bin;

const ADMIN: &str = "tok-admin-0123456789";

/// Runs schemathesis against `base` with `headers`, from a scratch directory (it keeps a cache
/// there) and without an example database, so one run does not replay another's; its report
/// when it finds something. One worker: Hypothesis parses lambdas' source with `ast`, which
/// CPython 3.11 does not allow on two threads at once ("AST constructor recursion depth
/// mismatch").
fn schemathesis(base: &str, headers: &[String]) -> Result<(), String> {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/schemathesis.toml");
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cmd = Command::new("python3");
    cmd.current_dir(scratch.path())
        .args(["-c", "from schemathesis.cli import schemathesis; schemathesis()", "--config-file"])
        .arg(config)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--checks", "all", "--seed", "1", "--generation-database", "none", "--workers", "1", "--no-color"]);
    for header in headers {
        cmd.args(["--header", header]);
    }
    let out = cmd.output().map_err(|e| format!("schemathesis did not start (pip install schemathesis): {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("schemathesis report:\n{report}");
    Err(failures(&report))
}

/// The failures section of a schemathesis report (what CI's excerpt of a test's output must
/// keep), at most 4,000 characters; the whole report goes to the test's output.
fn failures(report: &str) -> String {
    let start = report.find("FAILURES").or_else(|| report.find("ERRORS")).unwrap_or(0);
    let end = report[start..].find("SUMMARY").map_or(report.len(), |i| start + i);
    report[start..end].chars().take(4000).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_does_what_its_description_says() {
    // Open mode: no operation declares security, and none needs a token.
    let dir = tempfile::tempdir().unwrap();
    let gata = Gata::start_free(bin(), dir.path(), &[]).await.unwrap();
    let (status, open) = gata.client().get("/openapi.json").await.unwrap();
    assert_eq!(status, 200);
    assert!(open.get("security").is_none() && !open.to_string().contains("\"security\""), "{open}");
    if let Err(report) = schemathesis(&gata.base, &[]) {
        panic!("schemathesis, open mode:\n{report}");
    }
    drop(gata);

    // With principals: every operation behind the token says so, and the rest do not.
    let dir = tempfile::tempdir().unwrap();
    let principals = principals_env(&[("root", "admin", ADMIN, "")]);
    let gata = Gata::start_free(bin(), dir.path(), &[("GATA__AUTH__PRINCIPALS", principals.as_str())]).await.unwrap();
    let (_, served) = gata.client().get("/openapi.json").await.unwrap();
    let public: Vec<&str> = served["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, item)| item.as_object().unwrap().values().all(|op| op.get("security").is_none()))
        .map(|(path, _)| path.as_str())
        .collect();
    assert_eq!(
        public,
        [
            "/delta-sharing/files/{id}",
            "/healthz",
            "/market",
            "/openapi.json",
            "/readyz",
            "/review/label",
            "/v1/auth/nonce",
            "/v1/auth/siwe"
        ],
        "the routes outside the token"
    );
    if let Err(report) = schemathesis(&gata.base, &[format!("Authorization: Bearer {ADMIN}")]) {
        panic!("schemathesis, with principals:\n{report}");
    }

    // The checked-in description is the served one (GATA_BLESS=1 writes it).
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("GATA_BLESS").is_some() {
        std::fs::write(&file, &pretty).unwrap();
    }
    let checked_in: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert!(
        checked_in == served,
        "docs/openapi.json is not what the server describes; regenerate it with \
         GATA_BLESS=1 cargo test -p gata --test it -- api_contract"
    );
}
