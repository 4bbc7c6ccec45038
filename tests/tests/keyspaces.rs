//! Every Redis keyspace has one owner (`herald_proto::keyspace`), and the
//! Redis ACL generated from that table holds each service to it: a
//! service's user reads and writes its own keys, reads the directory if it
//! resolves people, and is refused everything else. Every end-to-end test
//! runs its services as these users, and the kit fails a test in which
//! Redis refused any of their commands (`TestSystem`'s drop).

use herald_proto::keyspace::{self, SERVICES};
use herald_testkit::servers::RedisServer;

async fn connect(url: String) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// What a command answers: `Ok` or the first word of Redis's refusal.
async fn try_cmd(
    c: &mut redis::aio::MultiplexedConnection,
    cmd: &mut redis::Cmd,
) -> Result<(), String> {
    cmd.query_async::<redis::Value>(c)
        .await
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or("error").to_string())
}

#[tokio::test]
async fn a_service_reaches_its_own_keys_and_no_one_elses() {
    let redis = RedisServer::start();
    let prefix = herald_config::RedisConfig::default().prefix;
    for service in SERVICES {
        let mut c = connect(redis.url_for(service)).await;
        let (writes, reads) = keyspace::access(service);
        for ks in keyspace::ALL {
            let key = format!("{}probe", ks.prefix(&prefix));
            let set = try_cmd(&mut c, redis::cmd("SET").arg(&key).arg("x")).await;
            let get = try_cmd(&mut c, redis::cmd("GET").arg(&key)).await;
            if writes.contains(&ks) {
                assert_eq!(
                    (&set, &get),
                    (&Ok(()), &Ok(())),
                    "{service} on its own {key}"
                );
            } else if reads.contains(&ks) {
                assert_eq!(set, Err("NOPERM".into()), "{service} writing {key}");
                assert_eq!(get, Ok(()), "{service} reading {key}");
            } else {
                assert_eq!(set, Err("NOPERM".into()), "{service} writing {key}");
                assert_eq!(get, Err("NOPERM".into()), "{service} reading {key}");
            }
        }
        // Keys outside every keyspace, and the commands that reach past
        // key patterns, are refused.
        let stray = try_cmd(&mut c, redis::cmd("GET").arg("elsewhere")).await;
        assert_eq!(stray, Err("NOPERM".into()), "{service}");
        let mut keys = redis::cmd("KEYS");
        keys.arg("*");
        let mut config = redis::cmd("CONFIG");
        config.arg("GET").arg("*");
        for mut cmd in [keys, redis::cmd("FLUSHALL"), config] {
            assert_eq!(
                try_cmd(&mut c, &mut cmd).await,
                Err("NOPERM".into()),
                "{service}"
            );
        }
    }
    // Without a user, nothing.
    let anonymous = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port))
        .unwrap()
        .get_multiplexed_async_connection()
        .await;
    let refused = match anonymous {
        Err(_) => true,
        Ok(mut c) => try_cmd(
            &mut c,
            redis::cmd("GET").arg(format!("{prefix}dir:contact:a")),
        )
        .await
        .is_err(),
    };
    assert!(refused, "an anonymous client was let in");
}

#[tokio::test]
async fn a_script_cannot_reach_past_its_callers_keys() {
    let redis = RedisServer::start();
    let prefix = herald_config::RedisConfig::default().prefix;
    let mut c = connect(redis.url_for("sla")).await;
    let own = keyspace::SLA.prefix(&prefix);
    let other = keyspace::DELIVERY.prefix(&prefix);
    let script = "return redis.call('GET', KEYS[1])";
    assert_eq!(
        try_cmd(
            &mut c,
            redis::cmd("EVAL").arg(script).arg(1).arg(format!("{own}x"))
        )
        .await,
        Ok(())
    );
    let reached = try_cmd(
        &mut c,
        redis::cmd("EVAL")
            .arg(script)
            .arg(1)
            .arg(format!("{other}job:x")),
    )
    .await;
    assert!(reached.is_err(), "a script of sla read delivery's ledger");
}
