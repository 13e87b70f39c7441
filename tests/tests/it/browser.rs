//! Debian's headless Chromium (`apt-get install chromium`; ./test.sh installs it): run once on a
//! page ([`chromium`]: its DOM or a screenshot), or driven over the DevTools protocol on a pipe
//! ([`Browser`]; `--remote-debugging-pipe`: commands on fd 3, answers and events on fd 4, each
//! message JSON ended by a NUL byte), so a test can press keys in a page and read what it shows.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// The flags every run takes: headless, no sandbox or GPU, nothing fetched in the background.
const FLAGS: [&str; 7] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Runs Chromium once with `args` (its profile under `profile`); returns what it printed.
pub(crate) fn chromium(profile: &Path, args: &[&str]) -> String {
    let out = Command::new("chromium")
        .args(FLAGS)
        .args(["--disable-quic", "--hide-scrollbars", "--virtual-time-budget=5000"])
        .arg(format!("--user-data-dir={}", profile.join("chromium").display()))
        .args(args)
        .output()
        .expect("chromium is installed (./test.sh installs Debian's chromium)");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Chromium process with one page, attached.
pub(crate) struct Browser {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    session: String,
    next_id: u64,
}

impl Browser {
    /// Starts Debian's headless Chromium with its profile under `profile` and opens `url`. A
    /// shell moves the pipes to fds 3 and 4 (what `--remote-debugging-pipe` reads and writes)
    /// before it becomes Chromium.
    pub(crate) fn open(profile: &Path, url: &str) -> Browser {
        let mut child = Command::new("sh")
            .args(["-c", r#"exec chromium "$@" 3<&0 4>&1 </dev/null >/dev/null"#, "sh"])
            .args(FLAGS)
            .args(["--remote-debugging-pipe", "about:blank"])
            .arg(format!("--user-data-dir={}", profile.join("chromium-cdp").display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium is installed (./test.sh installs Debian's chromium)");
        let (to, from) = (child.stdin.take().unwrap(), BufReader::new(child.stdout.take().unwrap()));
        let mut browser = Browser { child, to, from, session: String::new(), next_id: 0 };
        let target = browser.call(None, "Target.createTarget", json!({"url": url}));
        let target_id = target["targetId"].as_str().expect("a target").to_string();
        let attached = browser.call(None, "Target.attachToTarget", json!({"targetId": target_id, "flatten": true}));
        browser.session = attached["sessionId"].as_str().expect("a session").to_string();
        browser
    }

    /// Sends one command (to the page's session unless `session` is `None` and the browser is
    /// meant) and waits for its answer, skipping events.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("chromium reads commands");
        loop {
            let mut frame = Vec::new();
            self.from.read_until(0, &mut frame).expect("chromium answers");
            assert!(frame.pop() == Some(0), "chromium closed its pipe while {method} waited");
            let answer: Value = serde_json::from_slice(&frame).expect("a JSON message");
            if answer["id"] == json!(id) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub(crate) fn eval(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        self.call(Some(&session), "Runtime.evaluate", params)["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    pub(crate) fn wait_for(&mut self, expression: &str, within: Duration) {
        let end = Instant::now() + within;
        while self.eval(expression) != json!(true) {
            assert!(Instant::now() < end, "{expression} still false after {within:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Presses and releases the key of one lower-case letter, as a keyboard would.
    pub(crate) fn press(&mut self, letter: char) {
        let session = self.session.clone();
        let code = letter.to_ascii_uppercase() as u32;
        for kind in ["keyDown", "keyUp"] {
            let mut params = json!({"type": kind, "key": letter.to_string(), "code": format!("Key{}", letter.to_ascii_uppercase()), "windowsVirtualKeyCode": code});
            if kind == "keyDown" {
                params["text"] = json!(letter.to_string());
            }
            self.call(Some(&session), "Input.dispatchKeyEvent", params);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
