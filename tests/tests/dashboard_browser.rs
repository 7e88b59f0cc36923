//! The web dashboard in a real browser: `ringrift up` runs the sample loop; once it has promoted
//! a model, Debian's headless Chromium, driven by the pinned playwright-core
//! (`tests/browser/dashboard.mjs`), opens the login link `up` printed and checks the fleet
//! page's loop, the Elo chart's point of the first generation, the lineage, the matchups, the
//! agents, a task's log and the events, that the page updates itself without reloading and
//! that the browser logged no console error. Screenshots are kept in
//! `target/test-artefacts/dashboard/`. Before the browser, the access rules are checked over
//! plain HTTP: nothing without the token, the bearer token, the login form, a forged link. And
//! `ringrift server`'s dashboard over TLS: a browser whose NSS database (made with certutil)
//! trusts the cluster CA opens it; one without refuses its certificate.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringrift_controller::dashboard::auth::{self, Purpose};
use ringrift_e2e::cluster::until;
use ringrift_e2e::process::{Scratch, ringrift_bin};
use ringrift_e2e::repo_root;

/// A running `ringrift up`: SIGTERM on drop (it stops its children), SIGKILL after 30 s.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `ringrift server` with its TLS dashboard on 127.0.0.1 (no agent: the page is what counts);
/// the log its login line goes to, and its directory.
fn tls_server(scratch: &Path) -> (Up, PathBuf, PathBuf) {
    let dir = scratch.join("server");
    let log_path = scratch.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = Up(Command::new(ringrift_bin().unwrap())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--advertise",
            "127.0.0.1",
            "--controllers",
            "1",
        ])
        .args(["--dashboard-listen", "127.0.0.1:0", "--dir"])
        .arg(&dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap());
    (server, log_path, dir)
}

/// A $HOME whose NSS database (`~/.pki/nssdb`, where Chromium looks) trusts `ca` for TLS
/// servers, made with certutil.
fn nss_home_trusting(home: &Path, ca: &Path) {
    let db = home.join(".pki").join("nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db = format!("sql:{}", db.display());
    for args in [
        vec!["-N", "-d", &db, "--empty-password"],
        vec![
            "-A",
            "-d",
            &db,
            "-t",
            "C,,",
            "-n",
            "ringrift-cluster-ca",
            "-i",
            ca.to_str().unwrap(),
        ],
    ] {
        let out = Command::new("certutil").args(&args).output().unwrap_or_else(|e| {
            panic!("certutil (Debian's libnss3-tools) cannot run: {e}; run scripts/install-tools.sh")
        });
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One HTTP/1.1 request to `authority`; the status and the body.
fn http(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.extend([*k, ": ", *v, "\r\n"]);
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// Where install-tools.sh put playwright-core.
fn browser_modules() -> PathBuf {
    let dir = repo_root().join(".tools").join("browser").join("node_modules");
    assert!(
        dir.join("playwright-core").exists() && Path::new("/usr/bin/chromium").exists(),
        "playwright-core ({}) or /usr/bin/chromium is missing: run scripts/install-tools.sh",
        dir.display()
    );
    dir
}

fn access_rules(authority: &str, token: &str, login: &str) {
    // Nothing without a credential: the API says so, a page asks to log in.
    let (code, _, body) = http(authority, "GET", "/api/overview", &[], "");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("log in"), "{body}");
    let (code, _, body) = http(authority, "GET", "/loops/default/connect4", &[], "");
    assert_eq!(code, 401);
    assert!(body.contains("name=\"token\""), "{body}");
    // The bearer token works; a wrong one does not.
    let bearer = format!("Bearer {token}");
    let (code, _, body) = http(
        authority,
        "GET",
        "/api/overview",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(code, 200, "{body}");
    let (code, _, body) = http(
        authority,
        "GET",
        "/api/overview",
        &[("Authorization", "Bearer nope")],
        "",
    );
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("wrong bearer token"), "{body}");
    // The login form takes the token and sets a session cookie; a wrong token is refused.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (code, head, _) = http(authority, "POST", "/login", &form, &format!("token={token}"));
    assert_eq!(code, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap_or_else(|| panic!("no session cookie: {head}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    let (code, _, body) = http(authority, "GET", "/api/agents", &[("Cookie", session)], "");
    assert_eq!(code, 200, "{body}");
    let (code, _, _) = http(authority, "POST", "/login", &form, "token=wrong");
    assert_eq!(code, 401);
    // A login link: the printed one works; one for a later expiry with its tag, an expired
    // one and a session presented as a link do not.
    let (code, head, _) = http(authority, "GET", login, &[], "");
    assert_eq!(code, 303, "{head}");
    let t = login.strip_prefix("/login?t=").unwrap();
    let (expiry, tag) = t.split_once('.').unwrap();
    let later: i64 = expiry.parse::<i64>().unwrap() + 3600;
    let (code, _, body) = http(authority, "GET", &format!("/login?t={later}.{tag}"), &[], "");
    assert_eq!(code, 401);
    assert!(body.contains("not valid"), "{body}");
    let expired = auth::mint(token, Purpose::Login, 1_000);
    let (code, _, body) = http(authority, "GET", &format!("/login?t={expired}"), &[], "");
    assert_eq!(code, 401);
    assert!(body.contains("expired"), "{body}");
    let as_session = auth::mint(token, Purpose::Session, i64::MAX / 2);
    let (code, _, _) = http(authority, "GET", &format!("/login?t={as_session}"), &[], "");
    assert_eq!(code, 401);
    // Read-only.
    let (code, _, _) = http(
        authority,
        "DELETE",
        "/api/overview",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(code, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_sample_loop_in_a_real_browser() {
    let modules = browser_modules();
    let scratch = Scratch::new("dashboard-browser").unwrap();
    let dir = scratch.0.join("up");
    let log_path = scratch.0.join("up.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _up = Up(Command::new(ringrift_bin().unwrap())
        .args(["up", "--keep-running", "--plain", "--dir"])
        .arg(&dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap());

    // `up` prints a line of its own with the login link.
    let url = until("the dashboard line", Duration::from_secs(90), || async {
        let text = std::fs::read_to_string(&log_path).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("dashboard: ").map(str::to_owned))
    })
    .await;
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("not a loopback http URL: {url}"));
    let (port, login) = rest.split_once('/').unwrap();
    let authority = format!("127.0.0.1:{port}");
    let login = format!("/{login}");
    let token = std::fs::read_to_string(dir.join("dashboard-token"))
        .unwrap()
        .trim()
        .to_owned();

    // Wait until the sample loop has promoted a model.
    let bearer = format!("Bearer {token}");
    let best = until(
        "the sample loop to promote a model",
        Duration::from_secs(300),
        || async {
            let authority = authority.clone();
            let bearer = bearer.clone();
            let (code, _, body) = tokio::task::spawn_blocking(move || {
                http(
                    &authority,
                    "GET",
                    "/api/overview",
                    &[("Authorization", &bearer)],
                    "",
                )
            })
            .await
            .ok()?;
            let v: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
            v["loops"][0]["bestModel"].as_str().map(str::to_owned)
        },
    )
    .await;
    assert!(best.starts_with("connect4-g"), "{best}");

    {
        let (authority, token, login) = (authority.clone(), token.clone(), login.clone());
        tokio::task::spawn_blocking(move || access_rules(&authority, &token, &login))
            .await
            .unwrap();
    }

    // `ringrift server`'s dashboard, over TLS with a certificate from its cluster CA.
    let (_server, server_log, server_dir) = tls_server(&scratch.0);
    let tls_login = until("the TLS dashboard line", Duration::from_secs(90), || async {
        let text = std::fs::read_to_string(&server_log).ok()?;
        let line = text.lines().find_map(|l| l.strip_prefix("dashboard: https://"))?;
        Some(format!("https://{}", line.split_whitespace().next()?))
    })
    .await;
    let nss_home = scratch.0.join("nss-home");
    let empty_home = scratch.0.join("empty-home");
    std::fs::create_dir_all(&empty_home).unwrap();
    let ca = ringrift_apiserver::run::ca_files(&server_dir.join("apiserver")).0;
    nss_home_trusting(&nss_home, &ca);

    let shots = repo_root()
        .join("target")
        .join("test-artefacts")
        .join("dashboard");
    let _ = std::fs::remove_dir_all(&shots);
    let script = repo_root().join("tests").join("browser").join("dashboard.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("240")
            .arg("node")
            .arg(&script)
            .arg(&url)
            .arg("default/connect4")
            .arg(&shots)
            .env("RINGRIFT_BROWSER_MODULES", &modules)
            .env("CHROMIUM", "/usr/bin/chromium")
            .env("RINGRIFT_TLS_LOGIN", &tls_login)
            .env("RINGRIFT_NSS_HOME", &nss_home)
            .env("RINGRIFT_EMPTY_HOME", &empty_home)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    check_report(&out);
}

/// What the browser driver reported: every check passed, each page showed what it should, no
/// console error, and a screenshot of each page.
fn check_report(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "the browser driver printed no report ({}):\n{stdout}\n{stderr}",
                out.status
            )
        });
    assert!(
        out.status.success() && report["ok"] == true,
        "the browser checks failed: {report:#}\n{stderr}"
    );
    let seen = &report["seen"];
    assert!(seen["chartPoints"].as_u64().unwrap() >= 1, "{seen}");
    assert!(seen["lineageModels"].as_u64().unwrap() >= 1, "{seen}");
    assert_eq!(seen["bestModels"], 1, "{seen}");
    assert_eq!(seen["agents"], 2, "{seen}");
    assert!(seen["logBytes"].as_u64().unwrap() > 0, "{seen}");
    assert_eq!(seen["liveUpdate"], true, "{seen}");
    assert_eq!(report["consoleErrors"], serde_json::json!([]));
    assert_eq!(seen["tlsPage"], "Fleet", "{seen}");
    assert_eq!(
        seen["tlsRefusedWithoutCa"], "ERR_CERT_AUTHORITY_INVALID",
        "{seen}"
    );
    let kept = repo_root()
        .join("target")
        .join("test-artefacts")
        .join("dashboard");
    for page in ["fleet", "loop", "lineage", "matchups", "agents", "task", "events"] {
        let shot = kept.join(format!("{page}.png"));
        let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is no PNG", shot.display());
    }
    eprintln!("screenshots kept in {}", kept.display());
}
