//! Support for the end-to-end suite: real `gata serve` processes on free loopback ports, each
//! with its own data directory; an HTTP client for the public API; deadline-based waiting.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub mod slt;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// `GATA__AUTH__PRINCIPALS` for `principals` given as (name, role, token, extra TOML fields such
/// as `,contributor_id="x"`): an inline TOML array, tokens stored as their hashes.
pub fn principals_env(principals: &[(&str, &str, &str, &str)]) -> String {
    let entries: Vec<String> = principals
        .iter()
        .map(|(name, role, token, extra)| {
            format!(r#"{{name="{name}",role="{role}",token_sha256="{}"{extra}}}"#, gata_infra::auth::token_hash(token))
        })
        .collect();
    format!("[{}]", entries.join(","))
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local addr").port()
}

/// One of the example submissions in `examples/` (`chat_turn`, `preference`, `image_text_pair`).
pub fn example(name: &str) -> Value {
    let path = format!("{}/../examples/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).expect("example is JSON")
}

/// Polls `probe` until it yields a value, failing with `what` after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < end, "no {what} after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running `gata serve` process. Dropping it kills the process.
#[derive(Debug)]
pub struct Gata {
    child: Child,
    /// The data directory (broker log and lake).
    pub data_dir: PathBuf,
    /// `http://127.0.0.1:port`.
    pub base: String,
    log: PathBuf,
}

impl Gata {
    /// Starts `bin serve` on `data_dir` and a free port, and waits for `/healthz`.
    pub async fn start(bin: &Path, data_dir: &Path) -> anyhow::Result<Gata> {
        Self::start_free(bin, data_dir, &[]).await
    }

    /// Starts `bin serve` on `data_dir` and a free port with `GATA__…` environment overrides, and
    /// waits for `/healthz`. A port taken by another process between the pick and the bind (tests
    /// run side by side) is picked again, twice at most.
    pub async fn start_free(bin: &Path, data_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Gata> {
        let mut tries = 0;
        loop {
            match Self::start_on(bin, data_dir, free_port(), env).await {
                Err(e) if tries < 2 && format!("{e:#}").contains("Address already in use") => tries += 1,
                started => return started,
            }
        }
    }

    /// Starts `bin serve` on `data_dir` and `port` with `GATA__…` environment overrides, and
    /// waits for `/healthz`.
    pub async fn start_on(bin: &Path, data_dir: &Path, port: u16, env: &[(&str, &str)]) -> anyhow::Result<Gata> {
        Self::start_with(bin, data_dir, port, &[], env).await
    }

    /// Starts `bin serve` on `data_dir` and `port` with extra flags (`--roles sink`, `--brokers …`)
    /// and `GATA__…` environment overrides, and waits for `/healthz`.
    pub async fn start_with(
        bin: &Path,
        data_dir: &Path,
        port: u16,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Gata> {
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.join("serve.log");
        let out = File::options().create(true).append(true).open(&log)?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--http")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            // Flight SQL on a free port unless the test picks one (tests run side by side).
            .env("GATA__QUERY__FLIGHT_ADDR", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut gata = Gata { child, data_dir: data_dir.to_path_buf(), base: format!("http://127.0.0.1:{port}"), log };
        let http = reqwest::Client::new();
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", gata.base)).send().await
                && r.status().is_success()
            {
                return Ok(gata);
            }
            if let Some(status) = gata.child.try_wait()? {
                bail!("gata exited with {status} during start-up:\n{}", gata.log_text());
            }
            if Instant::now() > end {
                bail!("gata not healthy after 120 s:\n{}", gata.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything the process printed.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The Kafka bootstrap address the process printed (the latest, when the data dir's log
    /// holds earlier runs).
    pub fn kafka_bootstrap(&self) -> Option<String> {
        self.log_text()
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("Kafka").map(|r| r.split_whitespace().next().unwrap_or("").to_string()))
    }

    /// The Arrow Flight SQL address the process printed (`grpc://127.0.0.1:port`).
    pub fn flight_url(&self) -> Option<String> {
        self.log_text().lines().rev().find_map(|l| {
            l.trim().strip_prefix("Flight SQL").map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits up to `within` for the process to finish its shutdown (the sink
    /// commits what it holds). Errs when it does not exit in time or exits with a failure.
    pub async fn terminate(&mut self, within: Duration) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let sent = Command::new("sh").args(["-c", &format!("kill -TERM {pid}")]).status()?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid}: {sent}");
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::ensure!(status.success(), "gata exited with {status}:\n{}", self.log_text());
                return Ok(());
            }
            if Instant::now() > end {
                bail!("gata still running {within:?} after SIGTERM:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client for this process's API. It drops pooled connections idle for 1 s, under the
    /// server's idle keep-alive limit (`http.header_read_timeout`: 10 s, 2 s in the attack
    /// test): a connection reused just as the server closes it fails the request ("connection
    /// closed before message completed").
    pub fn client(&self) -> Api {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Api { http, base: self.base.clone(), token: None }
    }
}

impl Drop for Gata {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The public HTTP API.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    /// `http://host:port`.
    pub base: String,
    token: Option<String>,
}

impl Api {
    /// The same API, calling with `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Api {
        Api { token: Some(token.to_string()), ..self.clone() }
    }

    /// A request to `path` with the token, if any.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// POSTs `body` with `content_type` to `path`; returns status and JSON body.
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<(u16, Value)> {
        let resp =
            self.request(reqwest::Method::POST, path).header("content-type", content_type).body(body).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let json =
            serde_json::from_str(&text).with_context(|| format!("{path} answered {status} with non-JSON: {text:?}"))?;
        Ok((status, json))
    }

    /// POSTs events as one NDJSON batch.
    pub async fn post_ndjson(&self, path: &str, events: &[Value]) -> anyhow::Result<(u16, Value)> {
        let body: String = events.iter().map(|e| format!("{e}\n")).collect();
        self.post(path, "application/x-ndjson", body).await
    }

    /// The value of `series` (`name{labels}`, as `/metrics` prints it) on `/metrics`; none
    /// when the series is not exported.
    pub async fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        let metrics = self.request(reqwest::Method::GET, "/metrics").send().await?.text().await?;
        Ok(metric(&metrics, series))
    }

    /// GETs `path` as JSON.
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let resp = self.request(reqwest::Method::GET, path).send().await?;
        Ok((resp.status().as_u16(), resp.json().await?))
    }

    /// Runs SQL; returns status and answer.
    pub async fn sql(&self, sql: &str) -> anyhow::Result<(u16, Value)> {
        self.post("/v1/sql", "application/json", json!({ "sql": sql }).to_string()).await
    }

    /// The rows of a successful query.
    pub async fn rows(&self, sql: &str) -> anyhow::Result<Vec<Value>> {
        let (status, body) = self.sql(sql).await?;
        if status != 200 {
            bail!("{sql}: {status} {body}");
        }
        Ok(body["rows"].as_array().cloned().unwrap_or_default())
    }

    /// Checks `chat_turns` against the acknowledged event ids: (rows in the lake, lost =
    /// acknowledged but absent, duplicated = rows beyond one per event id).
    pub async fn lost_and_duplicated(
        &self,
        acked: &std::collections::HashSet<String>,
    ) -> anyhow::Result<(usize, usize, usize)> {
        let rows = self.rows("SELECT event_id FROM chat_turns").await?;
        let have: Vec<&str> = rows.iter().filter_map(|r| r["event_id"].as_str()).collect();
        let distinct: std::collections::HashSet<&str> = have.iter().copied().collect();
        let lost = acked.iter().filter(|id| !distinct.contains(id.as_str())).count();
        Ok((have.len(), lost, have.len() - distinct.len()))
    }

    /// The single number a `SELECT COUNT(*) AS n …` answers.
    pub async fn count(&self, sql: &str) -> anyhow::Result<u64> {
        let rows = self.rows(sql).await?;
        rows.first().and_then(|r| r["n"].as_u64()).with_context(|| format!("{sql}: no n in {rows:?}"))
    }
}

/// The value of `series` (`name{labels}` exactly as exported) in a Prometheus text exposition;
/// none when it is absent.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The values of every labelled series of metric `name` (`name{…}`) in a Prometheus text
/// exposition, in the order exported.
pub fn labelled_metrics(metrics: &str, name: &str) -> Vec<f64> {
    let prefix = format!("{name}{{");
    metrics.lines().filter(|l| l.starts_with(&prefix)).filter_map(|l| l.rsplit(' ').next()?.parse().ok()).collect()
}

/// A standalone `gata broker` process on a free port, killed on drop.
#[derive(Debug)]
pub struct Broker {
    child: Child,
    bin: PathBuf,
    data_dir: PathBuf,
    /// `127.0.0.1:port`.
    pub bootstrap: String,
}

impl Broker {
    /// Starts `bin broker` with its log under `data_dir` and waits until it accepts connections.
    pub async fn start(bin: &Path, data_dir: &Path) -> anyhow::Result<Broker> {
        std::fs::create_dir_all(data_dir)?;
        let bootstrap = format!("127.0.0.1:{}", free_port());
        let child = Self::spawn(bin, data_dir, &bootstrap)?;
        let broker = Broker { child, bin: bin.to_path_buf(), data_dir: data_dir.to_path_buf(), bootstrap };
        broker.wait_listening().await?;
        Ok(broker)
    }

    /// SIGKILLs the broker, waits `down`, and starts it again on the same address and log.
    pub async fn restart(&mut self, down: Duration) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tokio::time::sleep(down).await;
        self.child = Self::spawn(&self.bin, &self.data_dir, &self.bootstrap)?;
        self.wait_listening().await
    }

    fn spawn(bin: &Path, data_dir: &Path, bootstrap: &str) -> anyhow::Result<Child> {
        let log = File::options().create(true).append(true).open(data_dir.join("broker.log"))?;
        Ok(Command::new(bin)
            .args(["broker", "--kafka-listen", bootstrap, "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?)
    }

    async fn wait_listening(&self) -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(&self.bootstrap).await.is_err() {
            if Instant::now() > end {
                bail!("gata broker not listening on {} after 60 s", self.bootstrap);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An S3-compatible server on loopback (moto's server, `python3 -m moto.server`, installed by
/// `./test.sh`),
/// stopped on drop.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts the server and creates `bucket`.
    pub async fn start(bucket: &str) -> anyhow::Result<S3Server> {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting python3 -m moto.server (./test.sh installs it: pip install 'moto[server]')")?;
        let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
        let http = reqwest::Client::new();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.put(format!("{}/{bucket}", server.endpoint)).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            if Instant::now() > end {
                bail!("S3 server at {} did not create bucket {bucket} within 30 s", server.endpoint);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Keys under `prefix` in `bucket`.
    pub async fn list(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let url = format!("{}/{bucket}?list-type=2&prefix={prefix}", self.endpoint);
        let body = reqwest::get(url).await?.text().await?;
        Ok(body.split("<Key>").skip(1).filter_map(|s| s.split("</Key>").next()).map(str::to_string).collect())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
