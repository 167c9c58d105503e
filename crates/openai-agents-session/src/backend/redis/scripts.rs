//! The Lua scripts of the native Redis layout: one script per operation, so that each operation
//! is one atomic round trip (EVALSHA, or EVAL after a NOSCRIPT). `docs/storage/redis.md` shows
//! them with the key layout.
//!
//! Every script gets `KEYS[1]` = the session's metadata hash, `KEYS[2]` = its item list,
//! `KEYS[3]` = its lease hash, and, where the legacy seed layout may hold this session's
//! history, `KEYS[4]` = the seed's list (standalone servers only: in a cluster that key lives
//! in another slot). Writes take a fence in their ARGV: empty for an unfenced write (no check,
//! no extra command), else the token the session's live lease must have.

/// Helpers shared by every script (prepended to each).
const PRELUDE: &str = r#"
local meta, items, lease = KEYS[1], KEYS[2], KEYS[3]
-- One read of the metadata and one of the list, before any side effect: a key of another
-- type fails right here (WRONGTYPE), and metadata of a newer layout is refused.
local function load()
  local m = redis.call('HMGET', meta, 'v', 'expires_at', 'created_at', 'updated_at')
  local len = redis.call('LLEN', items)
  if m[1] and (tonumber(m[1]) == nil or tonumber(m[1]) > 1) then
    return nil, 'OAS_VERSION session metadata ' .. meta .. ' has layout version ' .. m[1]
  end
  return {exists = (m[1] or m[3]) ~= false, exp = tonumber(m[2] or ''), raw_exp = m[2],
          created = m[3], updated = tonumber(m[4] or '0') or 0, raw_updated = m[4], len = len}
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- True when the session exists and is live; an expired one is deleted first, whatever
-- Redis's own expiry has done so far.
local function live(st, now)
  if st.exp and st.exp <= now then
    redis.call('DEL', meta, items)
    st.exists, st.exp, st.len, st.updated = false, nil, 0, 0
  end
  return st.exists
end
-- Standalone only, for a session that does not exist: moves the seed layout's list into this
-- layout, atomically.
local function migrate(st, now)
  if #KEYS < 4 or redis.call('TYPE', KEYS[4])['ok'] ~= 'list' then return false end
  local old = redis.call('LRANGE', KEYS[4], 0, -1)
  for i = 1, #old, 1000 do
    redis.call('RPUSH', items, unpack(old, i, math.min(i + 999, #old)))
  end
  redis.call('DEL', KEYS[4])
  redis.call('HSET', meta, 'v', '1', 'created_at', now, 'updated_at', now, 'migrated_from', 'seed')
  st.exists, st.created, st.updated, st.len = true, tostring(now), now, redis.call('LLEN', items)
  return true
end
-- Sets every key's expiry to `at`, with `fields` (more metadata to write) in the same HSET.
local function expire_at(st, at, fields)
  redis.call('HSET', meta, 'expires_at', at, unpack(fields or {}))
  redis.call('PEXPIREAT', meta, at)
  if st.len > 0 then redis.call('PEXPIREAT', items, at) end
  st.exp = at
end
-- A read with refresh_on_read: pushes the expiry to now + ttl, skipped while that would move
-- it by less than the granularity (ttl / 100, so 36 s of a one-hour TTL): the session expires
-- between ttl - ttl/100 and ttl after its last access, and most reads write nothing.
local function refresh(st, now, ttl)
  if ttl > 0 and st.exists and (st.exp == nil or now + ttl - st.exp >= math.floor(ttl / 100)) then
    expire_at(st, now + ttl)
  end
end
-- A write: advances updated_at, then sets (ttl > 0) or removes the expiry of every key. `len`
-- is the list's new length when the caller knows it (RPUSH returns it).
local function touch(st, now, ttl, len)
  st.updated = math.max(now, st.updated + 1)
  st.len = len or redis.call('LLEN', items)
  if ttl > 0 then
    expire_at(st, now + ttl, {'updated_at', st.updated})
    return
  end
  redis.call('HSET', meta, 'updated_at', st.updated)
  if st.exp then
    redis.call('HDEL', meta, 'expires_at')
    redis.call('PERSIST', meta)
    redis.call('PERSIST', items)
    st.exp = nil
  end
end
-- A cheap plausibility test; the client decodes every record exactly.
local function plausible(r)
  return string.byte(r, 1) == 123 and string.byte(r, -1) == 125
end
-- What GET counts toward its limit: plausible records and envelopes (encrypted or compressed
-- records), so that an encrypted get_items(20) reads about 20 records, not the whole list.
local function candidate(r)
  return plausible(r) or string.byte(r, 1) == 0
end
-- The session's lease record {owner, token, expires_at} (false where missing) and whether it
-- is live at `now`. The record outlives the session: it holds the newest token.
local function lease_at(now)
  local l = redis.call('HMGET', lease, 'owner', 'token', 'expires_at')
  local exp = tonumber(l[3] or '')
  return l, (l[2] and exp and exp > now) and true or false
end
-- A write's fence, checked before any side effect: '' (unfenced) passes without a command;
-- a token passes only if it is the live lease's. Returns the FENCED reply (with the live
-- lease, if any), or nil.
local function refused(fence, now)
  if fence == '' then return nil end
  local l, live = lease_at(now)
  if live and l[2] == fence then return nil end
  if live then return {'FENCED', l[1], l[2], l[3]} end
  return {'FENCED'}
end
"#;

/// The common `add_items`, run before the prelude (so its helpers are not even defined): an
/// unfenced batch of at most 1,000 records for a live session of this layout (version 1, not
/// expired; with a TTL configured, one it already has). The same checks and writes as ADD's
/// general path below, in four to six commands and no helper tables: one `HMGET` (a key of
/// another type fails here or at the `RPUSH`, before any side effect), `TIME`, `RPUSH`, the
/// metadata's `HSET` and, with a TTL, the two `PEXPIREAT`. Anything else (a new, expired or
/// migrated session, a fence, a newer layout, a TTL added or removed) falls through to the
/// general path. About 30 us of server time per call against 40 to 47 for the general path
/// (redis-benchmark, turn-sized records, docs/benchmarks.md).
const ADD_FAST: &str = r#"
if ARGV[3] == '' and #ARGV <= 1003 then
  local m = redis.call('HMGET', KEYS[1], 'v', 'expires_at', 'updated_at')
  local ttl, exp = tonumber(ARGV[1]), tonumber(m[2] or '')
  if m[1] == '1' and ((ttl > 0 and exp) or (ttl == 0 and not m[2])) then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if not exp or exp > now then
      local len = redis.call('RPUSH', KEYS[2], unpack(ARGV, 4))
      local updated = math.max(now, (tonumber(m[3] or '0') or 0) + 1)
      if ttl > 0 then
        redis.call('HSET', KEYS[1], 'expires_at', now + ttl, 'updated_at', updated)
        redis.call('PEXPIREAT', KEYS[1], now + ttl)
        redis.call('PEXPIREAT', KEYS[2], now + ttl)
      else
        redis.call('HSET', KEYS[1], 'updated_at', updated)
      end
      return {'OK', len}
    end
  end
end
"#;

/// ARGV: ttl_ms (0: none), legacy_checked ('1' when no legacy check is needed), fence,
/// records... Returns {'OK', length}, {'NEW'} (a new session whose legacy key the client must
/// check) or {'FENCED', ...}.
const ADD: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now, ttl = now_ms(), tonumber(ARGV[1])
local no = refused(ARGV[3], now) if no then return no end
if not live(st, now) and not migrate(st, now) then
  if ARGV[2] ~= '1' then return {'NEW'} end
  if st.len > 0 then redis.call('DEL', items) end
  redis.call('HSET', meta, 'v', '1', 'created_at', now)
end
local len = st.len
for i = 4, #ARGV, 1000 do
  len = redis.call('RPUSH', items, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
touch(st, now, ttl, len)
return {'OK', st.len}
"#;

/// ARGV: limit (-1: all), offset (newest records already read), refresh ttl_ms (0: none).
/// Returns {'MISSING'} or {'OK', length, records oldest first...}: the newest records below
/// `offset`, widened past implausible records until `limit` plausible ones or the start.
const GET: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now = now_ms()
if not live(st, now) and not migrate(st, now) then return {'MISSING'} end
local limit, offset, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local len = st.len
local reply = {'OK', len}
if limit < 0 then
  local all = redis.call('LRANGE', items, 0, -1 - offset)
  for i = 1, #all do reply[#reply + 1] = all[i] end
else
  local newest_first, found, pos = {}, 0, offset
  while found < limit and pos < len do
    local chunk = redis.call('LRANGE', items, -(pos + limit - found), -(pos + 1))
    if #chunk == 0 then break end
    for i = #chunk, 1, -1 do
      newest_first[#newest_first + 1] = chunk[i]
      if candidate(chunk[i]) then found = found + 1 end
    end
    pos = pos + #chunk
  end
  for i = #newest_first, 1, -1 do reply[#reply + 1] = newest_first[i] end
end
refresh(st, now, ttl)
return reply
"#;

/// The common `get_items` head, run before the prelude: a session of this layout that is live
/// and whose expiry is not due for a refresh answers `{'OK'}` after one `HMGET` (and `TIME`
/// when it has an expiry). The `LRANGE` pipelined after it fails with `WRONGTYPE` if the list
/// holds another type. Anything else (missing, expired, due, a newer layout) falls through to
/// HEAD's general path.
const HEAD_FAST: &str = r#"
local m = redis.call('HMGET', KEYS[1], 'v', 'expires_at')
if m[1] == '1' then
  local exp, ttl = tonumber(m[2] or ''), tonumber(ARGV[1])
  if not m[2] then
    if ttl == 0 then return {'OK'} end
  elseif exp then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if exp > now and (ttl == 0 or now + ttl - exp < math.floor(ttl / 100)) then return {'OK'} end
  end
end
"#;

/// The first half of the common `get_items`: everything the GET script does but reading the
/// records, which a plain `LRANGE` pipelined right after it returns without carrying them
/// through Lua (about 35 us of server time for 20 turn-sized records). ARGV: refresh ttl_ms
/// (0: none). Returns {'MISSING'} or {'OK', length} (`{'OK'}` from [`HEAD_FAST`]): the session is live (an expired one was
/// deleted, a seed history migrated) and its expiry refreshed when due.
const HEAD: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now = now_ms()
if not live(st, now) and not migrate(st, now) then return {'MISSING'} end
refresh(st, now, tonumber(ARGV[1]))
return {'OK', st.len}
"#;

/// ARGV: ttl_ms (0: none), fence, check_all ('1' under require_encryption: every record
/// starting with '{', plausible or cut short, is checked by the client too, never removed
/// unseen). Returns {'MISSING'}, {'EMPTY'},
/// {'OK', record} (removed, with the implausible records above it), {'CHECK', record, above,
/// length}: the newest candidate is an envelope the client must decode; nothing was removed,
/// or {'FENCED', ...}.
const POP: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now, ttl = now_ms(), tonumber(ARGV[1])
local no = refused(ARGV[2], now) if no then return no end
if not live(st, now) and not migrate(st, now) then return {'MISSING'} end
local len = st.len
local k = 0
while k < len do
  local r = redis.call('LINDEX', items, -(k + 1))
  if plausible(r) and ARGV[3] ~= '1' then
    redis.call('LTRIM', items, 0, -(k + 2))
    touch(st, now, ttl)
    return {'OK', r}
  elseif string.byte(r, 1) == 0 or (ARGV[3] == '1' and string.byte(r, 1) == 123) then
    return {'CHECK', r, k, len}
  end
  k = k + 1
end
if k > 0 then
  redis.call('DEL', items)
  touch(st, now, ttl)
end
return {'EMPTY'}
"#;

/// ARGV: ttl_ms, fence, above, expected length, expected record. Removes the newest
/// `above + 1` records if the list is unchanged. Returns {'OK'}, {'CHANGED'} or {'FENCED', ...}.
const POP_AT: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now, ttl = now_ms(), tonumber(ARGV[1])
local no = refused(ARGV[2], now) if no then return no end
if not live(st, now) then return {'CHANGED'} end
local above, len = tonumber(ARGV[3]), tonumber(ARGV[4])
if st.len ~= len or redis.call('LINDEX', items, -(above + 1)) ~= ARGV[5] then
  return {'CHANGED'}
end
redis.call('LTRIM', items, 0, -(above + 2))
touch(st, now, ttl)
return {'OK'}
"#;

/// ARGV: fence. Deletes every key of the session (and the seed key, when given) but its
/// lease: clearing does not release it. Returns {'OK'} or {'FENCED', ...}.
const CLEAR: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local no = refused(ARGV[1], now_ms()) if no then return no end
if #KEYS >= 4 and redis.call('TYPE', KEYS[4])['ok'] == 'list' then
  redis.call('DEL', meta, items, KEYS[4])
else
  redis.call('DEL', meta, items)
end
return {'OK'}
"#;

/// Returns {'MISSING'} or {'OK', created_at, updated_at, expires_at or '', length}, followed
/// by the live lease's owner, token and expires_at when there is one.
const INFO: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now = now_ms()
if not live(st, now) and not migrate(st, now) then return {'MISSING'} end
local created = st.created or '0'
local reply = {'OK', created, st.raw_updated or created, st.raw_exp or '', st.len}
local l, leased = lease_at(now)
if leased then reply[6], reply[7], reply[8] = l[1], l[2], l[3] end
return reply
"#;

/// ARGV: start (list position), count. Returns {'MISSING'} or {'OK', length, records from
/// `start` on, at most `count`, oldest first}: one page of `Store::read_page`, with the same
/// checks as GET (types, layout version, expiry, seed migration) and no TTL refresh.
const PAGE: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now = now_ms()
if not live(st, now) and not migrate(st, now) then return {'MISSING'} end
local start, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local reply = {'OK', st.len}
local slice = redis.call('LRANGE', items, start, start + count - 1)
for i = 1, #slice do reply[#reply + 1] = slice[i] end
return reply
"#;

/// Staged writes. KEYS[1] = the staging list (`P:{T}:stage:<start ms>-<unique>`, in the
/// session's slot). ARGV: expiry of the staging list in ms, records... Returns its length.
const STAGE: &str = r#"
local stage = KEYS[1]
for i = 2, #ARGV, 1000 do
  redis.call('RPUSH', stage, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', stage, ARGV[1])
return {'OK', redis.call('LLEN', stage)}
"#;

/// KEYS: meta, items, lease, the seed's key where it may be migrated, and last the staging
/// list. ARGV: ttl_ms (0: none), mode (`append` or `replace`), legacy_checked ('1' when no
/// legacy check is needed), the number of records staged. Returns {'OK', length}, {'NEW'} (as
/// ADD) or {'LOST'} (the staging list is not what was staged: expired or pruned; nothing was
/// changed). Staged writes are not fenced.
const COMMIT: &str = r#"
local stage = table.remove(KEYS)
local st, err = load() if err then return redis.error_reply(err) end
local staged = tonumber(ARGV[4])
if redis.call('LLEN', stage) ~= staged then return {'LOST'} end
local now, ttl = now_ms(), tonumber(ARGV[1])
if ARGV[2] == 'replace' then
  redis.call('DEL', meta, items)
  if #KEYS >= 4 and redis.call('TYPE', KEYS[4])['ok'] == 'list' then redis.call('DEL', KEYS[4]) end
  st.exp, st.len = nil, 0
  if staged == 0 then return {'OK', 0} end
  redis.call('HSET', meta, 'v', '1', 'created_at', now)
elseif not live(st, now) and not migrate(st, now) then
  if ARGV[3] ~= '1' then return {'NEW'} end
  if st.len > 0 then redis.call('DEL', items) end
  redis.call('HSET', meta, 'v', '1', 'created_at', now)
end
if staged > 0 and redis.call('EXISTS', items) == 0 then
  redis.call('RENAME', stage, items)
elseif staged > 0 then
  for i = 0, staged - 1, 1000 do
    redis.call('RPUSH', items, unpack(redis.call('LRANGE', stage, i, i + 999)))
  end
  redis.call('DEL', stage)
end
touch(st, now, ttl)
return {'OK', st.len}
"#;

/// History transactions, first step of `replace_suffix`. ARGV: k (the suffix length),
/// operation id. Returns {'MISSING'}, {'KNOWN', digest} (the id is remembered) or
/// {'OK', the newest k records oldest first} for the client to compare.
const TAIL: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now = now_ms()
if not live(st, now) and not migrate(st, now) then return {'MISSING'} end
local known = redis.call('HGET', meta, 'op:' .. ARGV[2])
if known then
  local d, u = string.match(known, '^(%x+):(%d+)$')
  if d and tonumber(u) > now then return {'KNOWN', d} end
end
local reply = {'OK'}
local tail = redis.call('LRANGE', items, -tonumber(ARGV[1]), -1)
for i = 1, #tail do reply[#reply + 1] = tail[i] end
return reply
"#;

/// History transactions. ARGV: ttl_ms (0: none), legacy_checked, fence, operation id, digest
/// (hex), retention_ms, k, the k expected records (byte for byte, as TAIL read them), then the
/// replacement records. Returns {'NOW'}, {'BEFORE'}, {'REUSED'} (the id was used for another
/// digest), {'CHANGED'} (the newest k records are not the expected ones: nothing was changed),
/// {'NEW'} (as ADD) or {'FENCED', ...}. Operation ids live in the metadata hash (`op:<id>` -> `digest:until`),
/// so they share the session's TTL and go with it; expired ones are swept at most once a
/// minute per session.
const APPLY: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now, ttl = now_ms(), tonumber(ARGV[1])
local no = refused(ARGV[3], now) if no then return no end
local op, digest, k = 'op:' .. ARGV[4], ARGV[5], tonumber(ARGV[7])
local exists = live(st, now) or migrate(st, now)
if exists then
  local known = redis.call('HGET', meta, op)
  if known then
    local d, u = string.match(known, '^(%x+):(%d+)$')
    if d and tonumber(u) > now then
      if d == digest then return {'BEFORE'} end
      return {'REUSED'}
    end
  end
end
if k > 0 then
  if not exists then return {'CHANGED'} end
  local tail = redis.call('LRANGE', items, -k, -1)
  if #tail ~= k then return {'CHANGED'} end
  for i = 1, k do
    if tail[i] ~= ARGV[7 + i] then return {'CHANGED'} end
  end
  redis.call('LTRIM', items, 0, -(k + 1))
elseif not exists then
  if ARGV[2] ~= '1' then return {'NEW'} end
  if st.len > 0 then redis.call('DEL', items) end
  redis.call('HSET', meta, 'v', '1', 'created_at', now)
end
for i = 8 + k, #ARGV, 1000 do
  redis.call('RPUSH', items, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('HSET', meta, op, digest .. ':' .. (now + tonumber(ARGV[6])))
local swept = tonumber(redis.call('HGET', meta, 'ops_swept_at') or '0')
if now - swept > 60000 then
  for _, f in ipairs(redis.call('HKEYS', meta)) do
    if string.sub(f, 1, 3) == 'op:' then
      local u = tonumber(string.match(redis.call('HGET', meta, f) or '', ':(%d+)$') or '0')
      if u <= now then redis.call('HDEL', meta, f) end
    end
  end
  redis.call('HSET', meta, 'ops_swept_at', now)
end
touch(st, now, ttl)
return {'NOW'}
"#;

/// Leases. ARGV: owner, ttl_ms, retention_ms (how long the record outlives its lease). A live
/// lease of another owner: {'HELD', owner, token, expires_at}, nothing changed. A live lease of
/// this owner: its token, expiry moved to now + ttl. Otherwise a new token,
/// max(newest + 1, now in µs): {'GRANTED', token, expires_at}. The record's key expires
/// retention_ms after the lease; the session's keys are not touched.
const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local l, leased = lease_at(now)
local at = now + tonumber(ARGV[2])
local token = l[2]
if leased and l[1] ~= ARGV[1] then return {'HELD', l[1], l[2], l[3]} end
if not leased then
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  token = string.format('%.0f', math.max((tonumber(l[2] or '0') or 0) + 1, us))
  redis.call('HSET', lease, 'owner', ARGV[1], 'token', token, 'expires_at', at)
else
  redis.call('HSET', lease, 'expires_at', at)
end
redis.call('PEXPIREAT', lease, at + tonumber(ARGV[3]))
return {'GRANTED', token, at}
"#;

/// ARGV: token, ttl_ms, retention_ms. Moves the live lease's expiry to now + ttl if `token` is
/// its token: {'OK', owner, expires_at}; else {'FENCED', ...}.
const RENEW: &str = r#"
local now = now_ms()
local l, leased = lease_at(now)
if not leased then return {'FENCED'} end
if l[2] ~= ARGV[1] then return {'FENCED', l[1], l[2], l[3]} end
local at = now + tonumber(ARGV[2])
redis.call('HSET', lease, 'expires_at', at)
redis.call('PEXPIREAT', lease, at + tonumber(ARGV[3]))
return {'OK', l[1], at}
"#;

/// ARGV: token, retention_ms. Ends the lease of `token` now ({'OK'}; a no-op when it ended
/// already), keeping the record; a token that is not the newest: {'FENCED', ...}.
const RELEASE: &str = r#"
local now = now_ms()
local l, leased = lease_at(now)
if l[2] == ARGV[1] then
  if leased then
    redis.call('HSET', lease, 'expires_at', now)
    redis.call('PEXPIREAT', lease, now + tonumber(ARGV[2]))
  end
  return {'OK'}
end
if leased then return {'FENCED', l[1], l[2], l[3]} end
return {'FENCED'}
"#;

/// Returns {'LIVE', owner, token, expires_at} or {'NONE'}.
const LEASE: &str = r#"
local l, leased = lease_at(now_ms())
if leased then return {'LIVE', l[1], l[2], l[3]} end
return {'NONE'}
"#;

/// One script: its full source and its SHA-1 (for EVALSHA).
#[derive(Debug)]
pub(crate) struct LuaScript {
    pub(crate) name: &'static str,
    pub(crate) source: String,
    pub(crate) sha: String,
}

impl LuaScript {
    fn new(name: &'static str, body: &str) -> Self {
        Self::with_fast_path(name, "", body)
    }

    /// A script whose `fast` path runs before the prelude and returns when it applies.
    fn with_fast_path(name: &'static str, fast: &str, body: &str) -> Self {
        let source = format!("{fast}{PRELUDE}{body}");
        let sha = redis::Script::new(&source).get_hash().to_owned();
        LuaScript { name, source, sha }
    }
}

/// Every script of the native layout, hashed once per store.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) add: LuaScript,
    pub(crate) get: LuaScript,
    pub(crate) head: LuaScript,
    pub(crate) pop: LuaScript,
    pub(crate) pop_at: LuaScript,
    pub(crate) clear: LuaScript,
    pub(crate) info: LuaScript,
    pub(crate) page: LuaScript,
    pub(crate) stage: LuaScript,
    pub(crate) commit: LuaScript,
    pub(crate) tail: LuaScript,
    pub(crate) apply: LuaScript,
    pub(crate) acquire: LuaScript,
    pub(crate) renew: LuaScript,
    pub(crate) release: LuaScript,
    pub(crate) lease: LuaScript,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            add: LuaScript::with_fast_path("add", ADD_FAST, ADD),
            get: LuaScript::new("get", GET),
            head: LuaScript::with_fast_path("head", HEAD_FAST, HEAD),
            pop: LuaScript::new("pop", POP),
            pop_at: LuaScript::new("pop_at", POP_AT),
            clear: LuaScript::new("clear", CLEAR),
            info: LuaScript::new("info", INFO),
            page: LuaScript::new("page", PAGE),
            stage: LuaScript::new("stage", STAGE),
            commit: LuaScript::new("commit", COMMIT),
            tail: LuaScript::new("tail", TAIL),
            apply: LuaScript::new("apply", APPLY),
            acquire: LuaScript::new("acquire", ACQUIRE),
            renew: LuaScript::new("renew", RENEW),
            release: LuaScript::new("release", RELEASE),
            lease: LuaScript::new("lease", LEASE),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn storage_doc_shows_the_exact_scripts() {
        let doc = include_str!("../../../../../docs/storage/redis.md");
        for (name, body) in [
            ("prelude", super::PRELUDE),
            ("add_fast", super::ADD_FAST),
            ("add", super::ADD),
            ("head_fast", super::HEAD_FAST),
            ("head", super::HEAD),
            ("get", super::GET),
            ("pop", super::POP),
            ("pop_at", super::POP_AT),
            ("clear", super::CLEAR),
            ("info", super::INFO),
            ("page", super::PAGE),
            ("stage", super::STAGE),
            ("commit", super::COMMIT),
            ("tail", super::TAIL),
            ("apply", super::APPLY),
            ("acquire", super::ACQUIRE),
            ("renew", super::RENEW),
            ("release", super::RELEASE),
            ("lease", super::LEASE),
        ] {
            assert!(
                doc.contains(body.trim()),
                "docs/storage/redis.md does not show the current {name} script"
            );
        }
    }
}
