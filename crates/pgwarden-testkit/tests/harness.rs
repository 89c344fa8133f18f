//! The harness itself, against the real binaries.

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgwarden_testkit::{free_port, Auth, PgCluster, RedisServer};

/// psql with explicit credentials (not through the harness).
fn psql_login(cluster: &PgCluster, user: &str, db: &str, password: &str) -> Output {
    Command::new(cluster.bin_dir().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-w",
            "-h",
            "127.0.0.1",
            "-c",
            "SELECT current_user",
        ])
        .args(["-U", user, "-d", db, "-p", &cluster.port().to_string()])
        .env("PGPASSWORD", password)
        .env("PGPASSFILE", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn cluster_starts_runs_sql_and_is_removed_on_drop() {
    let started = Instant::now();
    let cluster = PgCluster::builder()
        .max_connections(20)
        .setting("work_mem", "'8MB'")
        .start()
        .unwrap();
    eprintln!("cluster start took {:?}", started.elapsed());
    assert_ne!(cluster.port(), 5432);
    assert_eq!(cluster.host(), "127.0.0.1");
    assert!(cluster.is_running());
    assert_eq!(cluster.psql("SELECT 1").unwrap(), "1");
    assert_eq!(cluster.psql("SHOW max_connections").unwrap(), "20");
    assert_eq!(cluster.psql("SHOW work_mem").unwrap(), "8MB");
    assert_eq!(cluster.psql("SHOW fsync").unwrap(), "off");
    assert_eq!(
        cluster.url("db", "u"),
        format!("postgres://u@127.0.0.1:{}/db", cluster.port())
    );
    assert_eq!(
        cluster.superuser_url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port())
    );
    assert!(cluster
        .log_contents()
        .contains("ready to accept connections"));
    let err = cluster.psql("SELECT * FROM missing_table").unwrap_err();
    assert!(err.to_string().contains("missing_table"), "{err}");

    let root = cluster.data_dir().parent().unwrap().to_path_buf();
    assert!(cluster.data_dir().exists());
    let port = cluster.port();
    drop(cluster);
    assert!(!root.exists(), "directory removed");
    assert!(!port_open(port), "server gone");
}

#[test]
fn roles_and_databases() {
    let cluster = PgCluster::start().unwrap();
    cluster.create_role("app", Some("pw"), false).unwrap();
    cluster.create_role("boss", None, true).unwrap();
    cluster.create_database("appdb", "app").unwrap();
    assert_eq!(
        cluster
            .psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'appdb'")
            .unwrap(),
        "app"
    );
    assert_eq!(
        cluster
            .psql("SELECT rolsuper::text || rolcanlogin::text FROM pg_roles WHERE rolname = 'boss'")
            .unwrap(),
        "truetrue"
    );
    let out = psql_login(&cluster, "app", "appdb", "");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "app");
}

#[test]
fn password_auth_refuses_wrong_passwords() {
    let cluster = PgCluster::builder()
        .auth(Auth::Password {
            superuser_password: "pw1".into(),
        })
        .start()
        .unwrap();
    assert_eq!(cluster.psql("SELECT current_user").unwrap(), "postgres");
    assert!(cluster.superuser_url().contains("postgres:pw1@"));
    assert!(psql_login(&cluster, "postgres", "postgres", "pw1")
        .status
        .success());
    for wrong in ["nope", ""] {
        let bad = psql_login(&cluster, "postgres", "postgres", wrong);
        assert!(!bad.status.success());
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            stderr.contains("password authentication failed") || stderr.contains("no password"),
            "{stderr}"
        );
    }
    cluster.create_role("app", Some("s3cr@t"), false).unwrap();
    cluster.create_database("appdb", "app").unwrap();
    assert!(psql_login(&cluster, "app", "appdb", "s3cr@t")
        .status
        .success());
    assert!(!psql_login(&cluster, "app", "appdb", "pw1").status.success());
}

#[tokio::test]
async fn password_auth_with_tokio_postgres() {
    let cluster = PgCluster::builder()
        .auth(Auth::Password {
            superuser_password: "p@ss word".into(),
        })
        .start()
        .unwrap();
    let client = cluster.try_connect_superuser().await.unwrap();
    let row = client.query_one("SELECT current_user", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "postgres");
    let wrong = cluster.url_with_password("postgres", "postgres", "wrong");
    assert!(tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .is_err());
}

#[test]
fn kill9_and_start_again_keep_port_and_data() {
    let mut cluster = PgCluster::start().unwrap();
    cluster
        .psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        .unwrap();
    // A busy backend that must die with the postmaster.
    let mut busy = Command::new(cluster.bin_dir().join("psql"))
        .args(["-X", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
        .args([
            "-p",
            &cluster.port().to_string(),
            "-c",
            "SELECT pg_sleep(120)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster
        .psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")
        .unwrap()
        != "1"
    {
        assert!(Instant::now() < deadline, "busy backend never showed up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let port = cluster.port();
    let killed = Instant::now();
    cluster.kill9().unwrap();
    eprintln!("kill9 took {:?}", killed.elapsed());
    assert!(!cluster.is_running());
    assert!(!port_open(port));
    assert!(!cluster.data_dir().join("postmaster.pid").exists());
    assert!(cluster.psql("SELECT 1").is_err());
    // The client of the killed backend sees its connection end.
    let deadline = Instant::now() + Duration::from_secs(10);
    while busy.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "client of a killed backend still waiting"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let restarted = Instant::now();
    cluster.start_again().unwrap();
    eprintln!("start_again after kill9 took {:?}", restarted.elapsed());
    assert_eq!(cluster.port(), port);
    assert!(cluster.is_running());
    assert_eq!(cluster.psql("SELECT x FROM kept").unwrap(), "42");
    assert!(cluster.log_contents().contains("not properly shut down"));

    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    assert!(!port_open(port));
    cluster.start_again().unwrap();
    cluster.restart().unwrap();
    assert_eq!(cluster.psql("SELECT x FROM kept").unwrap(), "42");
    // Twice in a row is fine.
    cluster.kill9().unwrap();
    cluster.kill9().unwrap();
    cluster.start_again().unwrap();
    cluster.start_again().unwrap();
    assert_eq!(cluster.psql("SELECT x FROM kept").unwrap(), "42");
}

#[test]
fn concurrent_clusters_get_distinct_ports() {
    let handles: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(|| PgCluster::start().unwrap()))
        .collect();
    let clusters: Vec<PgCluster> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ports: Vec<u16> = clusters.iter().map(|c| c.port()).collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    for c in &clusters {
        assert_eq!(
            c.psql("SHOW port").unwrap(),
            c.port().to_string(),
            "each cluster answers on its own port"
        );
    }
}

#[test]
fn free_ports_are_distinct() {
    let ports: std::collections::HashSet<u16> = (0..200).map(|_| free_port()).collect();
    assert_eq!(ports.len(), 200);
    assert!(!ports.contains(&5432) && !ports.contains(&6379) && !ports.contains(&6432));
}

#[test]
fn bad_setting_fails_with_the_server_log() {
    let err = PgCluster::builder()
        .setting("no_such_setting", "1")
        .start()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no_such_setting"), "{msg}");
}

#[test]
fn drop_removes_the_directory_when_a_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let cluster = PgCluster::start().unwrap();
        tx.send((
            cluster.data_dir().parent().unwrap().to_path_buf(),
            cluster.port(),
        ))
        .unwrap();
        panic!("test failure");
    });
    assert!(result.is_err());
    let (root, port) = rx.recv().unwrap();
    assert!(!root.exists());
    assert!(!port_open(port));
}

#[tokio::test]
async fn superuser_client_and_backend_count() {
    let cluster = PgCluster::start().unwrap();
    let client = cluster.connect_superuser().await;
    client
        .batch_execute("SET application_name = 'counted#1'")
        .await
        .unwrap();
    let other = cluster.try_connect_superuser().await.unwrap();
    other
        .batch_execute("SET application_name = 'counted#2'")
        .await
        .unwrap();
    assert_eq!(cluster.count_backends("counted#%").await, 2);
    assert_eq!(cluster.try_count_backends("nothing%").await.unwrap(), 0);
    drop(other);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.count_backends("counted#%").await != 1 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

#[test]
fn redis_starts_dies_and_comes_back() {
    let mut redis = RedisServer::start().unwrap();
    let port = redis.port();
    assert_ne!(port, 6379);
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
    assert!(redis.is_running());
    assert!(ping(port));
    redis.kill9().unwrap();
    assert!(!redis.is_running());
    assert!(!ping(port));
    redis.start_again().unwrap();
    assert_eq!(redis.port(), port);
    assert!(ping(port));
    // A graceful stop: redis-server hears SIGTERM and says goodbye; restart keeps the port.
    redis.stop().unwrap();
    assert!(!redis.is_running());
    assert!(!ping(port));
    let log = redis.log_contents();
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("ready to exit"), "{log}");
    redis.restart().unwrap();
    assert_eq!(redis.port(), port);
    assert!(ping(port));
    drop(redis);
    assert!(!port_open(port));
}
