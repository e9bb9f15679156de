//! The private PostgreSQL: isolated databases, restart with data kept.

use std::net::TcpStream;

use anyhow::Result;
use bus_testkit::PostgresServer;

#[test]
fn postgres_creates_isolated_databases() -> Result<()> {
    let server = PostgresServer::shared();
    assert_ne!(server.port(), 5432);
    let first = server.create_database()?;
    let second = server.create_database()?;
    assert_ne!(first.name(), second.name());
    assert_eq!(
        first.url(),
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            server.port(),
            first.name()
        )
    );

    assert_eq!(first.psql("select 1")?.trim(), "1");
    assert_eq!(second.psql("select 1")?.trim(), "1");

    first.psql("create table only_in_first (id int)")?;
    let in_second =
        second.psql("select count(*) from pg_tables where tablename = 'only_in_first'")?;
    assert_eq!(in_second.trim(), "0");
    Ok(())
}

#[test]
fn dropping_a_test_database_drops_it() -> Result<()> {
    let server = PostgresServer::shared();
    let db = server.create_database()?;
    let name = db.name().to_owned();
    drop(db);
    let left = server.psql(
        "postgres",
        &format!("select count(*) from pg_database where datname = '{name}'"),
    )?;
    assert_eq!(left.trim(), "0");
    Ok(())
}

#[test]
fn postgres_restarts_on_the_same_port_with_its_data() -> Result<()> {
    let mut server = PostgresServer::start()?;
    let port = server.port();
    let db = server.create_database()?;
    db.psql("create table survivors (name text); insert into survivors values ('kept')")?;

    server.kill();
    assert!(!server.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "killed server still listens"
    );
    server.kill(); // idempotent

    server.restart()?;
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(db.psql("select name from survivors")?.trim(), "kept");

    server.stop();
    assert!(!server.is_running());
    server.restart()?;
    assert_eq!(db.psql("select count(*) from survivors")?.trim(), "1");
    Ok(())
}
