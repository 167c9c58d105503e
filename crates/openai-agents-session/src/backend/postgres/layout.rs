//! The PostgreSQL layout: the tables, the functions every operation calls (each operation is
//! one call, so one round trip), and the statements that call them. `@name` in the text below
//! stands for the schema-qualified, prefixed name (`"public"."oas_name"` by default);
//! `docs/storage/postgres.md` shows the same text.

/// The schema version this build creates and reads (kept in `@schema_version`).
pub const SCHEMA_VERSION: i32 = 2;

/// What brings a schema of version 1 to this version, run (under the install's advisory lock)
/// before [`FUNCTIONS`] and the new version row: the tables are unchanged; version 2 gave
/// `@pop` its `p_check_all` parameter, `@fence` its status and `@get` its refresh granularity.
pub const UPGRADE_FROM_1: &str = r#"
DROP FUNCTION IF EXISTS @pop(bytea, bigint, bigint);
DROP FUNCTION IF EXISTS @fence(bytea, bigint, bigint);
"#;

/// Every name the schema text uses, longest first (so that `@staged` is not read as `@stage`).
const NAMES: &[&str] = &[
    "schema_version",
    "operations",
    "open_write",
    "sessions",
    "acquire",
    "release",
    "stages",
    "staged",
    "pop_at",
    "now_ms",
    "leases",
    "commit",
    "items",
    "fence",
    "apply",
    "renew",
    "stage",
    "prune",
    "clear",
    "page",
    "info",
    "meta",
    "pop",
    "add",
    "get",
];

/// Replaces every `@name` with the qualified name of this store's schema and prefix, and every
/// `#name` (an index, named without its schema) with the prefixed name.
pub(super) fn qualify(text: &str, schema: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(at) = rest.find('#') {
        out.push_str(&rest[..at]);
        let name_len = rest[at + 1..]
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(rest.len() - at - 1);
        out.push_str(&format!("\"{prefix}{}\"", &rest[at + 1..at + 1 + name_len]));
        rest = &rest[at + 1 + name_len..];
    }
    out.push_str(rest);
    for name in NAMES {
        out = out.replace(
            &format!("@{name}"),
            &format!("\"{schema}\".\"{prefix}{name}\""),
        );
    }
    out
}

/// The tables. Session ids are `bytea` (any UTF-8, NUL included; byte order is code point
/// order, so prefix ranges are byte ranges); records are `bytea`, exactly as the codec wrote
/// them. Times are milliseconds since the Unix epoch on the server's clock.
pub const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS @schema_version (
    version      integer PRIMARY KEY,
    installed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS @sessions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id bytea  NOT NULL UNIQUE,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    expires_at bigint,
    item_count bigint NOT NULL,
    next_seq   bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS #sessions_expires_at ON @sessions (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS #sessions_updated_at ON @sessions (updated_at, session_id);
CREATE TABLE IF NOT EXISTS @items (
    session bigint NOT NULL,
    seq     bigint NOT NULL,
    record  bytea  NOT NULL,
    PRIMARY KEY (session, seq)
);
CREATE TABLE IF NOT EXISTS @stages (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id bytea  NOT NULL,
    created_at bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS @staged (
    stage  bigint NOT NULL,
    seq    bigint NOT NULL,
    record bytea  NOT NULL,
    PRIMARY KEY (stage, seq)
);
CREATE TABLE IF NOT EXISTS @leases (
    session_id bytea  PRIMARY KEY,
    owner      bytea  NOT NULL,
    token      bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS #leases_expires_at ON @leases (expires_at);
CREATE TABLE IF NOT EXISTS @operations (
    session    bigint NOT NULL,
    op_id      bytea  NOT NULL,
    digest     bytea  NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (session, op_id)
);
CREATE INDEX IF NOT EXISTS #operations_expires_at ON @operations (expires_at);
"#;

/// The functions. Every write locks the session's row (`FOR UPDATE`) before anything else, and
/// a fenced one first takes the lease row `FOR SHARE`: one lock order everywhere, no lock held
/// past the call (each call is its own transaction).
pub const FUNCTIONS: &str = r#"
CREATE OR REPLACE FUNCTION @now_ms() RETURNS bigint LANGUAGE sql VOLATILE AS $$
  SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
$$;

-- A fenced write's check, the whole of it: status NULL passes (no token, or the live lease's);
-- else 'FENCED' with the live lease, if any, which the calling function returns as it is.
-- Locks the lease row FOR SHARE until the write commits, so no takeover lands in between.
CREATE OR REPLACE FUNCTION @fence(p_sid bytea, p_fence bigint, p_now bigint,
    OUT status text, OUT l_owner bytea, OUT l_token bigint, OUT l_expires bigint)
LANGUAGE plpgsql AS $$
BEGIN
  IF p_fence IS NULL THEN RETURN; END IF;
  SELECT l.owner, l.token, l.expires_at INTO l_owner, l_token, l_expires
    FROM @leases l WHERE l.session_id = p_sid FOR SHARE;
  IF FOUND AND l_expires > p_now AND l_token = p_fence THEN RETURN; END IF;
  status := 'FENCED';
  IF NOT FOUND OR l_expires <= p_now THEN
    l_owner := NULL; l_token := NULL; l_expires := NULL;
  END IF;
END $$;

-- The live session's row, locked, created when missing, started over when expired (its items
-- and operation ids deleted). Returns its key, next sequence and previous updated_at.
CREATE OR REPLACE FUNCTION @open_write(p_sid bytea, p_now bigint,
    OUT k bigint, OUT nxt bigint, OUT upd bigint)
LANGUAGE plpgsql AS $$
DECLARE v_exp bigint;
BEGIN
  LOOP
    SELECT s.id, s.next_seq, s.updated_at, s.expires_at INTO k, nxt, upd, v_exp
      FROM @sessions s WHERE s.session_id = p_sid FOR UPDATE;
    IF FOUND THEN
      IF v_exp IS NOT NULL AND v_exp <= p_now THEN
        DELETE FROM @items WHERE session = k;
        DELETE FROM @operations WHERE session = k;
        UPDATE @sessions SET created_at = p_now, updated_at = p_now, item_count = 0,
               next_seq = 1, expires_at = NULL WHERE id = k;
        nxt := 1; upd := NULL;
      END IF;
      RETURN;
    END IF;
    INSERT INTO @sessions (session_id, created_at, updated_at, expires_at, item_count, next_seq)
      VALUES (p_sid, p_now, p_now, NULL, 0, 1)
      ON CONFLICT (session_id) DO NOTHING RETURNING id INTO k;
    IF k IS NOT NULL THEN nxt := 1; upd := NULL; RETURN; END IF;
  END LOOP;
END $$;

-- add_items: 'OK' or 'FENCED' (with the live lease, if any).
CREATE OR REPLACE FUNCTION @add(p_sid bytea, p_records bytea[], p_ttl bigint, p_fence bigint,
    OUT status text, OUT l_owner bytea, OUT l_token bigint, OUT l_expires bigint)
LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); w record; n bigint := cardinality(p_records);
BEGIN
  IF p_fence IS NOT NULL THEN
    SELECT * INTO status, l_owner, l_token, l_expires FROM @fence(p_sid, p_fence, now_ms);
    IF status IS NOT NULL THEN RETURN; END IF;
  END IF;
  w := @open_write(p_sid, now_ms);
  INSERT INTO @items (session, seq, record)
    SELECT w.k, w.nxt + t.o - 1, t.r FROM unnest(p_records) WITH ORDINALITY AS t(r, o);
  UPDATE @sessions SET next_seq = w.nxt + n, item_count = item_count + n,
         updated_at = greatest(now_ms, coalesce(w.upd + 1, now_ms)),
         expires_at = CASE WHEN p_ttl IS NULL THEN NULL ELSE now_ms + p_ttl END
   WHERE id = w.k;
  status := 'OK';
END $$;

-- get_items: the newest p_limit records (NULL: all) below sequence p_before, newest first,
-- and the lowest sequence among them; with p_refresh the live session's expiry moves to
-- now + p_ttl in the same call when that moves it by at least the refresh granularity,
-- p_ttl / 100 (as on the other backends), so nearly every read writes nothing. live is false
-- for a missing or expired session.
CREATE OR REPLACE FUNCTION @get(p_sid bytea, p_limit bigint, p_before bigint, p_ttl bigint,
    p_refresh boolean, OUT live boolean, OUT records bytea[], OUT lowest bigint, OUT n bigint)
LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); k bigint; v_exp bigint;
BEGIN
  SELECT id, expires_at INTO k, v_exp FROM @sessions
   WHERE session_id = p_sid AND (expires_at IS NULL OR expires_at > now_ms);
  live := k IS NOT NULL;
  IF NOT live THEN RETURN; END IF;
  IF p_refresh AND (v_exp IS NULL OR now_ms + p_ttl - v_exp >= greatest(p_ttl / 100, 1)) THEN
    UPDATE @sessions SET expires_at = now_ms + p_ttl
     WHERE id = k AND (expires_at IS NULL OR expires_at > now_ms);
  END IF;
  SELECT array_agg(t.record ORDER BY t.seq DESC), min(t.seq), count(*) INTO records, lowest, n
    FROM (SELECT i.seq, i.record FROM @items i WHERE i.session = k AND i.seq < p_before
          ORDER BY i.seq DESC LIMIT p_limit) t;
END $$;

-- read_page: at most p_count records after sequence p_after, oldest first, with their
-- sequences; no refresh.
CREATE OR REPLACE FUNCTION @page(p_sid bytea, p_after bigint, p_count bigint,
    OUT live boolean, OUT seqs bigint[], OUT records bytea[])
LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); k bigint;
BEGIN
  SELECT id INTO k FROM @sessions
   WHERE session_id = p_sid AND (expires_at IS NULL OR expires_at > now_ms);
  live := k IS NOT NULL;
  IF NOT live THEN RETURN; END IF;
  SELECT array_agg(t.seq ORDER BY t.seq), array_agg(t.record ORDER BY t.seq) INTO seqs, records
    FROM (SELECT i.seq, i.record FROM @items i WHERE i.session = k AND i.seq > p_after
          ORDER BY i.seq LIMIT p_count) t;
END $$;

-- pop_item: 'OK' with the record removed (and the implausible records above it), 'EMPTY'
-- (implausible records removed, if any), 'CHECK' with an envelope only the client can
-- decode (nothing removed; at_seq is its sequence, top_seq the newest), or 'FENCED'.
-- Plausible: starts with '{' and ends with '}'. With p_check_all (require_encryption) every
-- record starting with '{' is a 'CHECK' too: the client refuses plain records as unreadable,
-- so none is removed unseen; only records starting with neither '{' nor 0x00 are dropped.
CREATE OR REPLACE FUNCTION @pop(p_sid bytea, p_ttl bigint, p_fence bigint, p_check_all boolean,
    OUT status text, OUT rec bytea, OUT at_seq bigint, OUT top_seq bigint,
    OUT l_owner bytea, OUT l_token bigint, OUT l_expires bigint)
LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); k bigint; upd bigint; r record;
        removed bigint := 0; lowest bigint; len int;
BEGIN
  IF p_fence IS NOT NULL THEN
    SELECT * INTO status, l_owner, l_token, l_expires FROM @fence(p_sid, p_fence, now_ms);
    IF status IS NOT NULL THEN RETURN; END IF;
  END IF;
  SELECT s.id, s.updated_at INTO k, upd FROM @sessions s
   WHERE s.session_id = p_sid AND (s.expires_at IS NULL OR s.expires_at > now_ms) FOR UPDATE;
  IF k IS NULL THEN status := 'EMPTY'; RETURN; END IF;
  FOR r IN SELECT i.seq, i.record AS body FROM @items i WHERE i.session = k ORDER BY i.seq DESC LOOP
    IF top_seq IS NULL THEN top_seq := r.seq; END IF;
    len := length(r.body);
    IF NOT p_check_all AND len >= 2 AND get_byte(r.body, 0) = 123
       AND get_byte(r.body, len - 1) = 125 THEN
      lowest := r.seq; removed := removed + 1; rec := r.body; status := 'OK';
      EXIT;
    ELSIF len > 0 AND (get_byte(r.body, 0) = 0 OR (p_check_all AND get_byte(r.body, 0) = 123)) THEN
      status := 'CHECK'; rec := r.body; at_seq := r.seq;
      RETURN;
    END IF;
    lowest := r.seq; removed := removed + 1;
  END LOOP;
  IF status IS NULL THEN status := 'EMPTY'; END IF;
  IF removed > 0 THEN
    DELETE FROM @items WHERE session = k AND seq >= lowest;
    UPDATE @sessions SET item_count = item_count - removed,
           updated_at = greatest(now_ms, upd + 1),
           expires_at = CASE WHEN p_ttl IS NULL THEN NULL ELSE now_ms + p_ttl END
     WHERE id = k;
  END IF;
END $$;

-- The second step of a 'CHECK' pop: removes the records from p_at up if the newest is still
-- p_top and the record at p_at is still p_record. 'OK', 'CHANGED' or 'FENCED'.
CREATE OR REPLACE FUNCTION @pop_at(p_sid bytea, p_ttl bigint, p_fence bigint, p_at bigint,
    p_top bigint, p_record bytea,
    OUT status text, OUT l_owner bytea, OUT l_token bigint, OUT l_expires bigint)
LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); k bigint; upd bigint; removed bigint;
BEGIN
  IF p_fence IS NOT NULL THEN
    SELECT * INTO status, l_owner, l_token, l_expires FROM @fence(p_sid, p_fence, now_ms);
    IF status IS NOT NULL THEN RETURN; END IF;
  END IF;
  SELECT s.id, s.updated_at INTO k, upd FROM @sessions s
   WHERE s.session_id = p_sid AND (s.expires_at IS NULL OR s.expires_at > now_ms) FOR UPDATE;
  IF k IS NULL
     OR (SELECT max(seq) FROM @items WHERE session = k) IS DISTINCT FROM p_top
     OR (SELECT i.record FROM @items i WHERE i.session = k AND i.seq = p_at) IS DISTINCT FROM p_record
  THEN
    status := 'CHANGED'; RETURN;
  END IF;
  DELETE FROM @items WHERE session = k AND seq >= p_at;
  GET DIAGNOSTICS removed = ROW_COUNT;
  UPDATE @sessions SET item_count = item_count - removed, updated_at = greatest(now_ms, upd + 1),
         expires_at = CASE WHEN p_ttl IS NULL THEN NULL ELSE now_ms + p_ttl END
   WHERE id = k;
  status := 'OK';
END $$;

-- clear_session: deletes the session's rows but its lease. 'OK' or 'FENCED'.
CREATE OR REPLACE FUNCTION @clear(p_sid bytea, p_fence bigint,
    OUT status text, OUT l_owner bytea, OUT l_token bigint, OUT l_expires bigint)
LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); k bigint;
BEGIN
  IF p_fence IS NOT NULL THEN
    SELECT * INTO status, l_owner, l_token, l_expires FROM @fence(p_sid, p_fence, now_ms);
    IF status IS NOT NULL THEN RETURN; END IF;
  END IF;
  DELETE FROM @sessions WHERE session_id = p_sid RETURNING id INTO k;
  IF k IS NOT NULL THEN
    DELETE FROM @items WHERE session = k;
    DELETE FROM @operations WHERE session = k;
  END IF;
  status := 'OK';
END $$;

-- A history transaction: 'NOW' (applied), 'BEFORE' (this id with this digest was applied),
-- 'REUSED' (this id with another digest), 'TAIL' (the newest p_k records are not exactly
-- p_expected: they are returned for the client to compare as JSON), or 'FENCED'.
CREATE OR REPLACE FUNCTION @apply(p_sid bytea, p_ttl bigint, p_fence bigint, p_op bytea,
    p_digest bytea, p_retention bigint, p_k bigint, p_expected bytea[], p_records bytea[],
    OUT status text, OUT tail bytea[], OUT l_owner bytea, OUT l_token bigint, OUT l_expires bigint)
LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); w record; k bigint; known bytea;
        got bytea[]; low bigint; cnt bigint; n bigint := cardinality(p_records);
        opened boolean := false;
BEGIN
  IF p_fence IS NOT NULL THEN
    SELECT * INTO status, l_owner, l_token, l_expires FROM @fence(p_sid, p_fence, now_ms);
    IF status IS NOT NULL THEN RETURN; END IF;
  END IF;
  SELECT s.id INTO k FROM @sessions s
   WHERE s.session_id = p_sid AND (s.expires_at IS NULL OR s.expires_at > now_ms) FOR UPDATE;
  IF k IS NULL AND p_k = 0 THEN
    -- Created (and locked) before the id is looked up, so that concurrent applies of one id
    -- on a new session queue on its row.
    w := @open_write(p_sid, now_ms);
    k := w.k; opened := true;
  END IF;
  IF k IS NOT NULL THEN
    SELECT o.digest INTO known FROM @operations o
     WHERE o.session = k AND o.op_id = p_op AND o.expires_at > now_ms;
    IF known IS NOT NULL THEN
      status := CASE WHEN known = p_digest THEN 'BEFORE' ELSE 'REUSED' END;
      RETURN;
    END IF;
  END IF;
  IF p_k > 0 THEN
    IF k IS NOT NULL THEN
      SELECT array_agg(t.record ORDER BY t.seq), min(t.seq), count(*) INTO got, low, cnt
        FROM (SELECT i.seq, i.record FROM @items i WHERE i.session = k
              ORDER BY i.seq DESC LIMIT p_k) t;
    END IF;
    IF k IS NULL OR cnt <> p_k OR got IS DISTINCT FROM p_expected THEN
      status := 'TAIL'; tail := coalesce(got, '{}'); RETURN;
    END IF;
    DELETE FROM @items WHERE session = k AND seq >= low;
    UPDATE @sessions SET item_count = item_count - cnt WHERE id = k;
  END IF;
  IF NOT opened THEN w := @open_write(p_sid, now_ms); END IF;
  INSERT INTO @items (session, seq, record)
    SELECT w.k, w.nxt + t.o - 1, t.r FROM unnest(p_records) WITH ORDINALITY AS t(r, o);
  UPDATE @sessions SET next_seq = w.nxt + n, item_count = item_count + n,
         updated_at = greatest(now_ms, coalesce(w.upd + 1, now_ms)),
         expires_at = CASE WHEN p_ttl IS NULL THEN NULL ELSE now_ms + p_ttl END
   WHERE id = w.k;
  INSERT INTO @operations (session, op_id, digest, expires_at)
    VALUES (w.k, p_op, p_digest, now_ms + p_retention)
    ON CONFLICT (session, op_id) DO UPDATE SET digest = EXCLUDED.digest,
       expires_at = EXCLUDED.expires_at;
  status := 'NOW';
END $$;

-- acquire_lease: 'GRANTED' (owner, token, expires_at) or 'HELD' (the holder's lease).
-- Tokens: greatest(newest + 1, now in microseconds).
CREATE OR REPLACE FUNCTION @acquire(p_sid bytea, p_owner bytea, p_ttl bigint,
    OUT status text, OUT owner bytea, OUT token bigint, OUT expires_at bigint)
LANGUAGE plpgsql AS $$
DECLARE now_us bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
        now_ms bigint := now_us / 1000; l record; v_token bigint; v_exp bigint;
BEGIN
  LOOP
    SELECT x.owner, x.token, x.expires_at INTO l FROM @leases x
     WHERE x.session_id = p_sid FOR UPDATE;
    EXIT WHEN FOUND;
    INSERT INTO @leases (session_id, owner, token, expires_at)
      VALUES (p_sid, p_owner, greatest(now_us, 1), now_ms + p_ttl)
      ON CONFLICT (session_id) DO NOTHING;
    IF FOUND THEN
      status := 'GRANTED'; owner := p_owner; token := greatest(now_us, 1);
      expires_at := now_ms + p_ttl; RETURN;
    END IF;
  END LOOP;
  IF l.expires_at > now_ms AND l.owner <> p_owner THEN
    status := 'HELD'; owner := l.owner; token := l.token; expires_at := l.expires_at; RETURN;
  END IF;
  v_exp := now_ms + p_ttl;
  IF l.expires_at > now_ms THEN
    v_token := l.token;
  ELSE
    v_token := greatest(l.token + 1, now_us);
  END IF;
  UPDATE @leases x SET owner = p_owner, token = v_token, expires_at = v_exp
   WHERE x.session_id = p_sid;
  status := 'GRANTED'; owner := p_owner; token := v_token; expires_at := v_exp;
END $$;

-- renew_lease: 'OK' (owner, expires_at) or 'FENCED' (with the live lease, if any).
CREATE OR REPLACE FUNCTION @renew(p_sid bytea, p_token bigint, p_ttl bigint,
    OUT status text, OUT owner bytea, OUT token bigint, OUT expires_at bigint)
LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); l record;
BEGIN
  SELECT x.owner, x.token, x.expires_at INTO l FROM @leases x
   WHERE x.session_id = p_sid FOR UPDATE;
  IF NOT FOUND OR l.expires_at <= now_ms THEN status := 'FENCED'; RETURN; END IF;
  IF l.token <> p_token THEN
    status := 'FENCED'; owner := l.owner; token := l.token; expires_at := l.expires_at; RETURN;
  END IF;
  UPDATE @leases x SET expires_at = now_ms + p_ttl WHERE x.session_id = p_sid;
  status := 'OK'; owner := l.owner; token := l.token; expires_at := now_ms + p_ttl;
END $$;

-- release_lease: 'OK' (ended now, or had ended) or 'FENCED' (with the live lease, if any).
CREATE OR REPLACE FUNCTION @release(p_sid bytea, p_token bigint,
    OUT status text, OUT owner bytea, OUT token bigint, OUT expires_at bigint)
LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); l record;
BEGIN
  SELECT x.owner, x.token, x.expires_at INTO l FROM @leases x
   WHERE x.session_id = p_sid FOR UPDATE;
  IF FOUND AND l.token = p_token THEN
    IF l.expires_at > now_ms THEN
      UPDATE @leases x SET expires_at = now_ms WHERE x.session_id = p_sid;
    END IF;
    status := 'OK'; RETURN;
  END IF;
  status := 'FENCED';
  IF FOUND AND l.expires_at > now_ms THEN
    owner := l.owner; token := l.token; expires_at := l.expires_at;
  END IF;
END $$;

-- Staged writes: stores records in @staged (invisible), creating the stage row when p_stage
-- is NULL. Returns the stage id.
CREATE OR REPLACE FUNCTION @stage(p_sid bytea, p_stage bigint, p_first bigint, p_records bytea[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE st bigint := p_stage;
BEGIN
  IF st IS NULL THEN
    INSERT INTO @stages (session_id, created_at) VALUES (p_sid, @now_ms()) RETURNING id INTO st;
  END IF;
  INSERT INTO @staged (stage, seq, record)
    SELECT st, p_first + t.o - 1, t.r FROM unnest(p_records) WITH ORDINALITY AS t(r, o);
  RETURN st;
END $$;

-- Commits a stage: its p_count records become the session's newest (p_replace: its only)
-- items in one step, and the stage is dropped. 'OK' or 'GONE' (prune removed the stage).
CREATE OR REPLACE FUNCTION @commit(p_sid bytea, p_stage bigint, p_count bigint,
    p_replace boolean, p_ttl bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); w record; old bigint;
BEGIN
  IF p_stage IS NOT NULL THEN
    PERFORM 1 FROM @stages WHERE id = p_stage FOR UPDATE;
    IF NOT FOUND THEN RETURN 'GONE'; END IF;
  END IF;
  IF p_replace THEN
    DELETE FROM @sessions WHERE session_id = p_sid RETURNING id INTO old;
    IF old IS NOT NULL THEN
      DELETE FROM @items WHERE session = old;
      DELETE FROM @operations WHERE session = old;
    END IF;
  END IF;
  IF p_stage IS NOT NULL AND p_count > 0 THEN
    w := @open_write(p_sid, now_ms);
    INSERT INTO @items (session, seq, record)
      SELECT w.k, w.nxt + s.seq - 1, s.record FROM @staged s WHERE s.stage = p_stage;
    UPDATE @sessions SET next_seq = w.nxt + p_count, item_count = item_count + p_count,
           updated_at = greatest(now_ms, coalesce(w.upd + 1, now_ms)),
           expires_at = CASE WHEN p_ttl IS NULL THEN NULL ELSE now_ms + p_ttl END
     WHERE id = w.k;
  END IF;
  IF p_stage IS NOT NULL THEN
    DELETE FROM @staged WHERE stage = p_stage;
    DELETE FROM @stages WHERE id = p_stage;
  END IF;
  RETURN 'OK';
END $$;

-- prune: deletes at most p_batch expired sessions (oldest expiry first, skipping rows other
-- calls hold), stages older than p_stale_after ms, operation ids past their retention and
-- lease records p_lease_retention past their lease. Returns (sessions, leftovers).
CREATE OR REPLACE FUNCTION @prune(p_batch bigint, p_stale_after bigint, p_lease_retention bigint,
    OUT sessions bigint, OUT leftovers bigint)
LANGUAGE plpgsql AS $$
DECLARE now_ms bigint := @now_ms(); ids bigint[]; stale bigint[];
BEGIN
  SELECT array_agg(id) INTO ids FROM (
    SELECT id FROM @sessions WHERE expires_at IS NOT NULL AND expires_at <= now_ms
     ORDER BY expires_at, id LIMIT p_batch FOR UPDATE SKIP LOCKED) t;
  sessions := coalesce(cardinality(ids), 0);
  IF sessions > 0 THEN
    DELETE FROM @items WHERE session = ANY (ids);
    DELETE FROM @operations WHERE session = ANY (ids);
    DELETE FROM @sessions WHERE id = ANY (ids);
  END IF;
  SELECT array_agg(id) INTO stale FROM (
    SELECT id FROM @stages WHERE created_at < now_ms - p_stale_after
     ORDER BY id LIMIT p_batch FOR UPDATE SKIP LOCKED) t;
  leftovers := coalesce(cardinality(stale), 0);
  IF leftovers > 0 THEN
    DELETE FROM @staged WHERE stage = ANY (stale);
    DELETE FROM @stages WHERE id = ANY (stale);
  END IF;
  DELETE FROM @operations WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM @operations WHERE expires_at <= now_ms LIMIT p_batch));
  DELETE FROM @leases WHERE session_id = ANY (ARRAY(
    SELECT session_id FROM @leases WHERE expires_at <= now_ms - p_lease_retention
     LIMIT p_batch FOR UPDATE SKIP LOCKED));
END $$;
"#;

/// The statement of each operation (prepared once per connection).
pub mod sql {
    /// `add_items` and a fenced one.
    pub const ADD: &str = "SELECT * FROM @add($1::bytea, $2::bytea[], $3::bigint, $4::bigint)";
    /// `get_items` (one call; more only past corrupt records).
    pub const GET: &str =
        "SELECT * FROM @get($1::bytea, $2::bigint, $3::bigint, $4::bigint, $5::boolean)";
    /// `read_page`.
    pub const PAGE: &str = "SELECT * FROM @page($1::bytea, $2::bigint, $3::bigint)";
    /// `read_before`: the newest `$3` records below sequence `$2` of the live session, newest
    /// first (one range of the `(session, seq)` index).
    pub const BEFORE: &str =
        "SELECT i.seq, i.record FROM @items i JOIN @sessions s ON i.session = s.id
  WHERE s.session_id = $1::bytea AND (s.expires_at IS NULL OR s.expires_at > @now_ms())
    AND i.seq < $2::bigint
  ORDER BY i.seq DESC LIMIT $3::bigint";
    /// `pop_item`.
    pub const POP: &str = "SELECT * FROM @pop($1::bytea, $2::bigint, $3::bigint, $4::boolean)";
    /// The second step of a pop of an envelope.
    pub const POP_AT: &str = "SELECT * FROM @pop_at($1::bytea, $2::bigint, $3::bigint, $4::bigint, $5::bigint, $6::bytea)";
    /// `clear_session`.
    pub const CLEAR: &str = "SELECT * FROM @clear($1::bytea, $2::bigint)";
    /// `apply_history_transaction`.
    pub const APPLY: &str = "SELECT * FROM @apply($1::bytea, $2::bigint, $3::bigint, $4::bytea, $5::bytea, $6::bigint, $7::bigint, $8::bytea[], $9::bytea[])";
    /// `session_info`: the live session and its live lease, one statement.
    pub const INFO: &str = "SELECT s.item_count, s.created_at, s.updated_at, s.expires_at,
        l.owner, l.token, l.expires_at
   FROM @sessions s
   LEFT JOIN @leases l ON l.session_id = s.session_id AND l.expires_at > @now_ms()
  WHERE s.session_id = $1::bytea AND (s.expires_at IS NULL OR s.expires_at > @now_ms())";
    /// `list_sessions`: a range of the `session_id` index (from the cursor or the prefix up to
    /// the prefix's successor; NULL: no upper bound).
    pub const LIST: &str = "SELECT session_id FROM @sessions
  WHERE session_id >= $1::bytea AND ($2::bytea IS NULL OR session_id < $2::bytea)
    AND session_id <> $3::bytea
    AND (expires_at IS NULL OR expires_at > @now_ms())
  ORDER BY session_id LIMIT $4::bigint";
    /// `list_sessions` newest first: the `(updated_at, session_id)` index walked backwards
    /// from the cursor `updated_ms:session_id`, the prefix as a filter.
    pub const LIST_NEWEST: &str = "SELECT session_id, updated_at FROM @sessions
  WHERE (updated_at < $1::bigint OR (updated_at = $1::bigint AND $2::bytea <> ''::bytea AND session_id < $2::bytea))
    AND substring(session_id FROM 1 FOR $4::integer) = $3::bytea
    AND (expires_at IS NULL OR expires_at > @now_ms())
  ORDER BY updated_at DESC, session_id DESC LIMIT $5::bigint";
    /// `prune`, one batch.
    pub const PRUNE: &str = "SELECT * FROM @prune($1::bigint, $2::bigint, $3::bigint)";
    /// A staged write's part.
    pub const STAGE: &str = "SELECT @stage($1::bytea, $2::bigint, $3::bigint, $4::bytea[])";
    /// A staged write's commit.
    pub const COMMIT: &str =
        "SELECT @commit($1::bytea, $2::bigint, $3::bigint, $4::boolean, $5::bigint)";
    /// A staged write's abort.
    pub const UNSTAGE: &str = "WITH d AS (DELETE FROM @staged WHERE stage = $1::bigint)
  DELETE FROM @stages WHERE id = $1::bigint";
    /// `acquire_lease`.
    pub const ACQUIRE: &str = "SELECT * FROM @acquire($1::bytea, $2::bytea, $3::bigint)";
    /// `renew_lease`.
    pub const RENEW: &str = "SELECT * FROM @renew($1::bytea, $2::bigint, $3::bigint)";
    /// `release_lease`.
    pub const RELEASE: &str = "SELECT * FROM @release($1::bytea, $2::bigint)";
    /// `lease_info`.
    pub const LEASE: &str = "SELECT owner, token, expires_at FROM @leases
  WHERE session_id = $1::bytea AND expires_at > @now_ms()";
}

/// The smallest byte string greater than every one starting with `prefix`: the prefix without
/// its trailing 0xFF bytes, its last byte plus one; `None` for the empty prefix (or all 0xFF).
pub(super) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = prefix.to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xFF {
            bytes.push(last + 1);
            return Some(bytes);
        }
    }
    None
}

/// The columns each table must have (name, type as `information_schema` spells it), checked
/// at open so that a table of another shape is an error naming it.
pub(super) const EXPECTED_COLUMNS: &[(&str, &[(&str, &str)])] = &[
    (
        "sessions",
        &[
            ("created_at", "bigint"),
            ("expires_at", "bigint"),
            ("id", "bigint"),
            ("item_count", "bigint"),
            ("next_seq", "bigint"),
            ("session_id", "bytea"),
            ("updated_at", "bigint"),
        ],
    ),
    (
        "items",
        &[
            ("record", "bytea"),
            ("seq", "bigint"),
            ("session", "bigint"),
        ],
    ),
    (
        "stages",
        &[
            ("created_at", "bigint"),
            ("id", "bigint"),
            ("session_id", "bytea"),
        ],
    ),
    (
        "staged",
        &[("record", "bytea"), ("seq", "bigint"), ("stage", "bigint")],
    ),
    (
        "leases",
        &[
            ("expires_at", "bigint"),
            ("owner", "bytea"),
            ("session_id", "bytea"),
            ("token", "bigint"),
        ],
    ),
    (
        "operations",
        &[
            ("digest", "bytea"),
            ("expires_at", "bigint"),
            ("op_id", "bytea"),
            ("session", "bigint"),
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_qualified_longest_first() {
        let q = qualify("@staged @stages @stage #sessions_expires_at", "s", "p_");
        assert_eq!(
            q,
            r#""s"."p_staged" "s"."p_stages" "s"."p_stage" "p_sessions_expires_at""#
        );
    }

    #[test]
    fn prefix_successor_bounds_every_extension() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(b"a:"), Some(b"a;".to_vec()));
        assert_eq!(prefix_successor(&[b'a', 0xFF]), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(&[0xFF]), None);
    }

    #[test]
    fn storage_doc_shows_the_exact_schema() {
        let doc = include_str!("../../../../../docs/storage/postgres.md");
        for block in [TABLES, FUNCTIONS, UPGRADE_FROM_1] {
            for statement in block.split("\n\n") {
                assert!(
                    doc.contains(statement.trim()),
                    "docs/storage/postgres.md does not show:\n{statement}"
                );
            }
        }
        // The statement table shows each statement on one line.
        for statement in [
            sql::ADD,
            sql::GET,
            sql::PAGE,
            sql::BEFORE,
            sql::POP,
            sql::POP_AT,
            sql::CLEAR,
            sql::APPLY,
            sql::INFO,
            sql::LIST,
            sql::LIST_NEWEST,
            sql::PRUNE,
            sql::STAGE,
            sql::COMMIT,
            sql::UNSTAGE,
            sql::ACQUIRE,
            sql::RENEW,
            sql::RELEASE,
            sql::LEASE,
        ] {
            let one_line = statement.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                doc.contains(&format!("`{one_line}`")),
                "docs/storage/postgres.md's statement table does not show:\n{one_line}"
            );
        }
    }
}
