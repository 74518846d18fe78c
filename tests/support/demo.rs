//! `conduit run --demo` as the real binary on loopback ports it picks
//! itself, for the tests that use it as a newcomer would.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long the demo may take to print its addresses.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// The running demo, killed when the test ends, however it ends.
pub struct Demo {
    child: Child,
    /// The dashboard's address.
    pub web: String,
    /// public-api's address.
    pub api: String,
    /// telemetry's gRPC address.
    pub telemetry: String,
    /// tap's gRPC address.
    pub tap: String,
}

impl Demo {
    pub fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_conduit"))
            .args([
                "run",
                "--demo",
                "--telemetry-addr=127.0.0.1:0",
                "--metrics-addr=127.0.0.1:0",
                "--api-addr=127.0.0.1:0",
                "--api-metrics-addr=127.0.0.1:0",
                "--tap-addr=127.0.0.1:0",
                "--tap-metrics-addr=127.0.0.1:0",
                "--destination-addr=127.0.0.1:0",
                "--destination-metrics-addr=127.0.0.1:0",
                "--proxy-api-addr=127.0.0.1:0",
                "--proxy-api-metrics-addr=127.0.0.1:0",
                "--tap-port=0",
                "--web-addr=127.0.0.1:0",
                "--web-metrics-addr=127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("conduit runs");
        let stdout = child.stdout.take().unwrap();
        // The banner names the bound addresses; the rest of the output is
        // drained for as long as the demo runs.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                for (prefix, key) in [
                    ("public-api: http://", "api"),
                    ("web: http://", "web"),
                    ("telemetry: gRPC on ", "telemetry"),
                    ("tap: gRPC on ", "tap"),
                ] {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        let addr = rest
                            .split(['/', ',', ' '])
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        let _ = tx.send((key, addr));
                    }
                }
            }
        });
        let mut demo = Demo {
            child,
            web: String::new(),
            api: String::new(),
            telemetry: String::new(),
            tap: String::new(),
        };
        while [&demo.web, &demo.api, &demo.telemetry, &demo.tap]
            .iter()
            .any(|a| a.is_empty())
        {
            let (key, addr) = rx
                .recv_timeout(START_DEADLINE)
                .expect("the demo prints its telemetry, tap, public-api and web addresses");
            match key {
                "api" => demo.api = addr,
                "telemetry" => demo.telemetry = addr,
                "tap" => demo.tap = addr,
                _ => demo.web = addr,
            }
        }
        demo
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
