//! The Lua scripts of the native Redis layout: one script per operation, so that each operation
//! is one atomic round trip (EVALSHA, or EVAL after a NOSCRIPT). `docs/storage/redis.md` shows
//! them with the key layout.
//!
//! Every script gets `KEYS[1]` = the session's metadata hash, `KEYS[2]` = its item list, and,
//! where the legacy seed layout may hold this session's history, `KEYS[3]` = the seed's list
//! (standalone servers only: in a cluster that key lives in another slot).

/// Helpers shared by every script (prepended to each).
const PRELUDE: &str = r#"
local meta, items = KEYS[1], KEYS[2]
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
  if #KEYS < 3 or redis.call('TYPE', KEYS[3])['ok'] ~= 'list' then return false end
  local old = redis.call('LRANGE', KEYS[3], 0, -1)
  for i = 1, #old, 1000 do
    redis.call('RPUSH', items, unpack(old, i, math.min(i + 999, #old)))
  end
  redis.call('DEL', KEYS[3])
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
"#;

/// ARGV: ttl_ms (0: none), legacy_checked ('1' when no legacy check is needed), records...
/// Returns {'OK', length} or {'NEW'} (a new session whose legacy key the client must check).
const ADD: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now, ttl = now_ms(), tonumber(ARGV[1])
if not live(st, now) and not migrate(st, now) then
  if ARGV[2] ~= '1' then return {'NEW'} end
  if st.len > 0 then redis.call('DEL', items) end
  redis.call('HSET', meta, 'v', '1', 'created_at', now)
end
local len = st.len
for i = 3, #ARGV, 1000 do
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
      if plausible(chunk[i]) then found = found + 1 end
    end
    pos = pos + #chunk
  end
  for i = #newest_first, 1, -1 do reply[#reply + 1] = newest_first[i] end
end
refresh(st, now, ttl)
return reply
"#;

/// ARGV: ttl_ms (0: none). Returns {'MISSING'}, {'EMPTY'}, {'OK', record} (removed, with the
/// implausible records above it), or {'CHECK', record, above, length}: the newest candidate is
/// an envelope the client must decode; nothing was removed.
const POP: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now, ttl = now_ms(), tonumber(ARGV[1])
if not live(st, now) and not migrate(st, now) then return {'MISSING'} end
local len = st.len
local k = 0
while k < len do
  local r = redis.call('LINDEX', items, -(k + 1))
  if plausible(r) then
    redis.call('LTRIM', items, 0, -(k + 2))
    touch(st, now, ttl)
    return {'OK', r}
  elseif string.byte(r, 1) == 0 then
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

/// ARGV: ttl_ms, above, expected length, expected record. Removes the newest `above + 1`
/// records if the list is unchanged. Returns {'OK'} or {'CHANGED'}.
const POP_AT: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now, ttl = now_ms(), tonumber(ARGV[1])
if not live(st, now) then return {'CHANGED'} end
local above, len = tonumber(ARGV[2]), tonumber(ARGV[3])
if st.len ~= len or redis.call('LINDEX', items, -(above + 1)) ~= ARGV[4] then
  return {'CHANGED'}
end
redis.call('LTRIM', items, 0, -(above + 2))
touch(st, now, ttl)
return {'OK'}
"#;

/// Deletes every key of the session (and the seed key, when given). Returns {'OK'}.
const CLEAR: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
if #KEYS >= 3 and redis.call('TYPE', KEYS[3])['ok'] == 'list' then
  redis.call('DEL', meta, items, KEYS[3])
else
  redis.call('DEL', meta, items)
end
return {'OK'}
"#;

/// Returns {'MISSING'} or {'OK', created_at, updated_at, expires_at or '', length}.
const INFO: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now = now_ms()
if not live(st, now) and not migrate(st, now) then return {'MISSING'} end
local created = st.created or '0'
return {'OK', created, st.raw_updated or created, st.raw_exp or '', st.len}
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

/// KEYS: meta, items, the staging list, and the seed's key where it may be migrated. ARGV:
/// ttl_ms (0: none), mode (`append` or `replace`), legacy_checked ('1' when no legacy check is
/// needed), the number of records staged. Returns {'OK', length}, {'NEW'} (as ADD) or {'LOST'}
/// (the staging list is not what was staged: expired or pruned; nothing was changed).
const COMMIT: &str = r#"
local stage = table.remove(KEYS, 3)
local st, err = load() if err then return redis.error_reply(err) end
local staged = tonumber(ARGV[4])
if redis.call('LLEN', stage) ~= staged then return {'LOST'} end
local now, ttl = now_ms(), tonumber(ARGV[1])
if ARGV[2] == 'replace' then
  redis.call('DEL', meta, items)
  if #KEYS >= 3 and redis.call('TYPE', KEYS[3])['ok'] == 'list' then redis.call('DEL', KEYS[3]) end
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

/// History transactions. ARGV: ttl_ms (0: none), legacy_checked, operation id, digest (hex),
/// retention_ms, k, the k expected records (byte for byte, as TAIL read them), then the
/// replacement records. Returns {'NOW'}, {'BEFORE'}, {'REUSED'} (the id was used for another
/// digest), {'CHANGED'} (the newest k records are not the expected ones: nothing was changed)
/// or {'NEW'} (as ADD). Operation ids live in the metadata hash (`op:<id>` -> `digest:until`),
/// so they share the session's TTL and go with it; expired ones are swept at most once a
/// minute per session.
const APPLY: &str = r#"
local st, err = load() if err then return redis.error_reply(err) end
local now, ttl = now_ms(), tonumber(ARGV[1])
local op, digest, k = 'op:' .. ARGV[3], ARGV[4], tonumber(ARGV[6])
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
    if tail[i] ~= ARGV[6 + i] then return {'CHANGED'} end
  end
  redis.call('LTRIM', items, 0, -(k + 1))
elseif not exists then
  if ARGV[2] ~= '1' then return {'NEW'} end
  if st.len > 0 then redis.call('DEL', items) end
  redis.call('HSET', meta, 'v', '1', 'created_at', now)
end
for i = 7 + k, #ARGV, 1000 do
  redis.call('RPUSH', items, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('HSET', meta, op, digest .. ':' .. (now + tonumber(ARGV[5])))
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

/// One script: its full source and its SHA-1 (for EVALSHA).
#[derive(Debug)]
pub(crate) struct LuaScript {
    pub(crate) name: &'static str,
    pub(crate) source: String,
    pub(crate) sha: String,
}

impl LuaScript {
    fn new(name: &'static str, body: &str) -> Self {
        let source = format!("{PRELUDE}{body}");
        let sha = redis::Script::new(&source).get_hash().to_owned();
        LuaScript { name, source, sha }
    }
}

/// Every script of the native layout, hashed once per store.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) add: LuaScript,
    pub(crate) get: LuaScript,
    pub(crate) pop: LuaScript,
    pub(crate) pop_at: LuaScript,
    pub(crate) clear: LuaScript,
    pub(crate) info: LuaScript,
    pub(crate) page: LuaScript,
    pub(crate) stage: LuaScript,
    pub(crate) commit: LuaScript,
    pub(crate) tail: LuaScript,
    pub(crate) apply: LuaScript,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            add: LuaScript::new("add", ADD),
            get: LuaScript::new("get", GET),
            pop: LuaScript::new("pop", POP),
            pop_at: LuaScript::new("pop_at", POP_AT),
            clear: LuaScript::new("clear", CLEAR),
            info: LuaScript::new("info", INFO),
            page: LuaScript::new("page", PAGE),
            stage: LuaScript::new("stage", STAGE),
            commit: LuaScript::new("commit", COMMIT),
            tail: LuaScript::new("tail", TAIL),
            apply: LuaScript::new("apply", APPLY),
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
            ("add", super::ADD),
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
        ] {
            assert!(
                doc.contains(body.trim()),
                "docs/storage/redis.md does not show the current {name} script"
            );
        }
    }
}
