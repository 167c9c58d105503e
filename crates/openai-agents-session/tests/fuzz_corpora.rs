//! The committed fuzz corpora and crash reproducers (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) fed to the functions the fuzz targets call
//! (`openai_agents_session::fuzzing`), as ordinary tests: no input may panic, and the round
//! trips the targets check must hold. Fuzzing itself is documented in docs/testing.md.

use std::path::{Path, PathBuf};

use openai_agents_session::codec::RecordCodec;
use openai_agents_session::encryption::{Encryption, EncryptionKey};
use openai_agents_session::Item;

fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a corpus entry").path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn run(target: &str, min_inputs: usize, f: fn(&[u8])) {
    let files = inputs(target);
    assert!(
        files.len() >= min_inputs,
        "fuzz/corpus/{target} holds {} inputs, expected at least {min_inputs}",
        files.len()
    );
    for path in &files {
        let data = std::fs::read(path).expect("a corpus file");
        if let Err(panic) = std::panic::catch_unwind(|| f(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{} panicked: {message}", path.display());
        }
    }
}

#[test]
fn codec_corpus() {
    run("codec", 20, openai_agents_session::fuzzing::codec);
}

#[test]
fn store_url_corpus() {
    run("store_url", 10, openai_agents_session::fuzzing::store_url);
}

#[test]
fn history_corpus() {
    run("history", 4, openai_agents_session::fuzzing::history);
}

#[test]
fn jsonl_import_corpus() {
    run(
        "jsonl_import",
        2,
        openai_agents_session::fuzzing::jsonl_import,
    );
}

#[test]
fn dynamodb_corpus() {
    run("dynamodb", 3, openai_agents_session::fuzzing::dynamodb);
}

#[test]
fn redis_corpus() {
    run("redis", 5, openai_agents_session::fuzzing::redis);
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed file");
}

/// Writes the seed inputs of every target into `fuzz/corpus/<target>/seed-*`: records the
/// fuzzer could not forge (AES-GCM under the test key, zstd frames, split DynamoDB records)
/// and one well-formed input of each format. Run by hand before fuzzing (docs/testing.md):
/// `cargo test -p openai-agents-session --features fuzzing,compression --test fuzz_corpora -- --ignored write_seeds`.
#[test]
#[ignore = "writes the seed corpus into fuzz/corpus; run by hand"]
fn write_seeds() {
    let key = |b: &[u8; 32]| EncryptionKey::from_bytes(b).expect("32 bytes");
    let current = *b"openai-agents-session fuzz key!!";
    let old = *b"openai-agents-session old key!!!";
    let plain = RecordCodec::default();
    let sealed = RecordCodec::new(Encryption::new(vec![key(&current)]));
    let older = RecordCodec::new(Encryption::new(vec![key(&old)]));
    let items: Vec<Item> = [
        r#"{"role":"user","content":"hi"}"#,
        r#"{"type":"function_call","call_id":"c1","arguments":"{\"x\":1e400}","n":123456789012345678901234567890}"#,
        r#"{"k":"\u00e9\ud83d\ude00 \"q\" \\","nested":{"a":[1,2.50,-0,true,null,{"b":[]}]}}"#,
    ]
    .iter()
    .map(|t| t.parse().expect("seed item"))
    .collect();
    let big: Item = format!(r#"{{"content":"{}"}}"#, "ab".repeat(4000))
        .parse()
        .expect("big item");

    // codec: the first byte picks the session ("s" when odd, else the whole input is the record
    // of "fuzz-session").
    for (i, item) in items.iter().chain([&big]).enumerate() {
        write(
            "codec",
            &format!("plain-{i}"),
            &plain.encode("fuzz-session", item).expect("encode"),
        );
        let mut envelope = vec![0, 1, 0];
        envelope.extend_from_slice(item.as_bytes());
        write("codec", &format!("envelope-{i}"), &envelope);
        write(
            "codec",
            &format!("zstd-{i}"),
            &plain
                .encode_compressed("fuzz-session", item)
                .expect("encode"),
        );
        write(
            "codec",
            &format!("sealed-{i}"),
            &sealed.encode("fuzz-session", item).expect("encode"),
        );
        write(
            "codec",
            &format!("sealed-zstd-{i}"),
            &sealed
                .encode_compressed("fuzz-session", item)
                .expect("encode"),
        );
        write(
            "codec",
            &format!("older-{i}"),
            &older.encode("fuzz-session", item).expect("encode"),
        );
        let mut other = vec![1];
        other.extend_from_slice(&sealed.encode("s", item).expect("encode"));
        write("codec", &format!("sealed-s-{i}"), &other);
    }
    write("codec", "newer-version", &[0, 2, 0, b'{', b'}']);
    write("codec", "unknown-flags", &[0, 1, 0b100, b'{', b'}']);

    // dynamodb: a metadata row, then a record split into parts (a compressed, encrypted record
    // cut in three), and a seed item.
    let record = sealed.encode_compressed("s", &big).expect("encode");
    let third = record.len() / 3 + 1;
    let mut split = b"Nv=1\nNgen=1733000000000\nNnext=4\nNcount=3\nNcreated_at=5\nNupdated_at=6\nNexpires_at=9\nNstamp=7\nNp_b1=10\nNq_b1=1733000000001\nNlife=1\nNrg=3\nSlo=worker\nNlt=42\nNle=99\nBd=\n--\nSsk=i#00000000001733000000000#00000000000000000003\nNparts=3\nSb=b1\n".to_vec();
    for chunk in record.chunks(third) {
        split.extend_from_slice(b"--\nBr=");
        split.extend_from_slice(chunk);
        split.push(b'\n');
    }
    write("dynamodb", "split", &split);
    let mut inline = b"Nv=1\nNgen=2\nSsk=o#00000000000000000002#op-1\n--\nSsk=i#00000000000000000002#00000000000000000000\nBr=".to_vec();
    inline.extend_from_slice(items[0].as_bytes());
    write("dynamodb", "inline", &inline);
    write(
        "dynamodb",
        "seed-item",
        br#"Sconversation_data=[{"role":"user","content":"hi"},{"a":1},2,"x"]
Nupdated_at=1700000000.5
Nttl=1700003600"#,
    );

    // redis: an INFO reply, a session id with the characters the tag escapes, a cursor, a
    // staging key, a SQLite timestamp.
    write(
        "redis",
        "info",
        b"bOK\nb1700000000000\ni1700000000001\nb\ni3\nbworker\nb42\ni1700000060000",
    );
    write("redis", "id", b"user:{42}%7B*?[x]\\");
    write("redis", "cursor", b"1:12345:7");
    write("redis", "stage", b"p:{a%7Db}:stage:1733000000000-123-4");
    write("redis", "sqlite-time", b"2023-11-14 22:13:20.125Z");

    // store_url: every scheme with its options.
    for (i, url) in [
        "sqlite:///tmp/s.db?ttl=60&refresh_on_read=true&max_item_bytes=1000&journal_mode=wal&synchronous=normal&busy_timeout=5",
        "sqlite://data/s.db?layout=openai-agents&sessions_table=agent_sessions&messages_table=agent_messages",
        "memory://name?ttl=1",
        "redis://user:p%40ss@localhost:6379/0?prefix=app&layout=seed&connect_timeout=1.5&response_timeout=2&stale_batch_secs=60",
        "rediss://h:6380?tls_ca_file=/ca.pem&tls_insecure=false&require_encryption=true&encryption_key_env=a2V5",
        "redis+cluster://h1:7000,h2:7001?layout=openai-agents&operation_retention=60",
        "dynamodb://table?region=eu-west-1&endpoint=http://localhost:8000&create_table=true&grace=5&max_attempts=3&layout=seed&stale_stage_after=10m",
        "postgres://u:pw@h1:5432,h2:5433/db?sslmode=verify-full&sslrootcert=/ca.pem&schema=s&table_prefix=oas_&pool_size=4&connect_timeout=3&application_name=x",
        "postgresql:///db?host=/var/run/postgresql&port=5440&user=u&password=p&layout=openai-agents&sessions_table=a&messages_table=b",
        "sqlite://x?encryption_key_file=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D,b",
    ]
    .iter()
    .enumerate()
    {
        write("store_url", &i.to_string(), url.as_bytes());
    }

    // history: both transaction types, the camelCase alias, canonical numbers.
    write(
        "history",
        "append",
        br#"{"type":"append_items","items":[{"role":"user","content":"hi"},{"n":1.50e+3}]}"#,
    );
    write("history", "replace", br#"{"type":"replace_suffix","expected_suffix":[{"a":1}],"replacement":[{"b":{"c":[-0.0,1E2]}}]}"#);
    write(
        "history",
        "camel",
        br#"{"type":"replace_suffix","expectedSuffix":[],"replacement":[]}"#,
    );
    write("history", "number", b"-12.3400e-05");

    // jsonl_import: two sessions, a blank line, unicode ids.
    write(
        "jsonl_import",
        "two",
        "{\"session_id\":\"a\",\"item\":{\"role\":\"user\",\"content\":\"hi\"}}\n\n{\"session_id\":\"a\",\"item\":{\"n\":1}}\n{\"session_id\":\"\u{e9}:{x}\\u0000\",\"item\":{}}\n"
            .as_bytes(),
    );
    write(
        "jsonl_import",
        "bad",
        b"{\"session_id\":\"a\",\"item\":{}}\n{\"session_id\":\"b\",\"item\":[]}\n{\"session_id\":\"a\",\"item\":{}}\n",
    );
}
