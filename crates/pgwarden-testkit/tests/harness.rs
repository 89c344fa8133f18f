//! The harness itself against real binaries.

use std::process::Command;

use pgwarden_testkit::{Auth, PgCluster, RedisServer};

#[test]
fn cluster_starts_runs_sql_and_is_removed_on_drop() {
    let started = std::time::Instant::now();
    let cluster = PgCluster::builder()
        .max_connections(20)
        .setting("work_mem", "'8MB'")
        .start()
        .unwrap();
    eprintln!("cluster start took {:?}", started.elapsed());
    assert_ne!(cluster.port(), 5432);
    assert_eq!(cluster.psql("SELECT 1 + 1").unwrap(), "2");
    assert_eq!(cluster.psql("SHOW max_connections").unwrap(), "20");
    assert_eq!(cluster.psql("SHOW work_mem").unwrap(), "8MB");
    cluster.create_role("app", Some("pw"), false).unwrap();
    cluster.create_database("appdb", "app").unwrap();
    assert_eq!(
        cluster
            .psql("SELECT count(*) FROM pg_database WHERE datname = 'appdb'")
            .unwrap(),
        "1"
    );
    let dir = cluster.data_dir().to_path_buf();
    assert!(dir.exists());
    drop(cluster);
    assert!(!dir.exists(), "data directory removed");
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
    let psql = cluster.bin_dir().join("psql");
    let run = |pw: &str| {
        Command::new(&psql)
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                "SELECT 1",
            ])
            .arg("-p")
            .arg(cluster.port().to_string())
            .env("PGPASSWORD", pw)
            .output()
            .unwrap()
    };
    assert!(run("pw1").status.success());
    let bad = run("nope");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("password authentication failed"));
}

#[test]
fn kill9_and_start_again_keep_port_and_data() {
    let mut cluster = PgCluster::start().unwrap();
    let other = PgCluster::start().unwrap();
    assert_ne!(cluster.port(), other.port());
    cluster
        .psql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42); CHECKPOINT")
        .unwrap();
    let port = cluster.port();
    cluster.kill9().unwrap();
    assert!(!cluster.is_running());
    assert!(cluster.psql("SELECT 1").is_err());
    cluster.start_again().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(cluster.psql("SELECT x FROM kept").unwrap(), "42");
    cluster.restart().unwrap();
    assert_eq!(cluster.psql("SELECT x FROM kept").unwrap(), "42");
}

#[tokio::test]
async fn superuser_client_and_backend_count() {
    let cluster = PgCluster::start().unwrap();
    let client = cluster.connect_superuser().await;
    client
        .batch_execute("SET application_name = 'counted'")
        .await
        .unwrap();
    let n = cluster.count_backends("count%").await;
    assert_eq!(n, 1);
}

#[test]
fn redis_starts_dies_and_comes_back() {
    use std::io::{Read, Write};
    let ping = |port: u16| -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        s.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    };
    let mut redis = RedisServer::start().unwrap();
    assert!(ping(redis.port()));
    redis.kill9().unwrap();
    assert!(!ping(redis.port()));
    redis.start_again().unwrap();
    assert!(ping(redis.port()));
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
}
