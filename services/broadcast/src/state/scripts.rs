//! The Lua scripts behind the store's transitions. Each checks and changes
//! a broadcast's keys in one step, so that service instances, redelivered
//! commands and late status events racing on one broadcast cannot activate
//! it after a cancel, end it twice, count a confirmation twice, give one
//! update two numbers or move a job's progress back.

/// KEYS: state, confirmed, people. ARGV: r<i>, value, now ms.
/// Returns {1, confirmed, recipients} | {0} again | {-1} unknown | {-2} ended.
pub(super) const CONFIRM: &str = r#"
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return {-1} end
if st ~= 'active' and st ~= 'starting' then return {-2} end
local ends = tonumber(redis.call('HGET', KEYS[1], 'ends_at') or '0')
if tonumber(ARGV[3]) > ends then return {-2} end
if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 0 then return {-1} end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return {0} end
return {1, redis.call('HLEN', KEYS[2]), tonumber(redis.call('HGET', KEYS[1], 'recipients') or '0')}
"#;

/// KEYS: state, active set. ARGV: new state, now ms, reason, broadcast id.
/// Returns 1 if the broadcast ended now, 0 if it had already.
pub(super) const FINISH: &str = r#"
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'finished' or st == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'ended_at', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'cancelled', ARGV[3]) end
redis.call('SREM', KEYS[2], ARGV[4])
return 1
"#;

/// KEYS: state, active set. ARGV: broadcast id. starting → active.
pub(super) const ACTIVATE: &str = r#"
if redis.call('HGET', KEYS[1], 'state') ~= 'starting' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'active')
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"#;

/// KEYS: jobs. ARGV: field, new progress. Moves a job's progress forward.
pub(super) const PROGRESS: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[2]
local rank = {queued = 1, sent = 2}
if cur and not rank[cur] then return 0 end
if new == 'failed' and cur == 'sent' then new = 'undelivered' end
if rank[new] and cur and rank[new] <= rank[cur] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], new)
return 1
"#;

/// KEYS: commands, state. ARGV: command id. The update's number, new or
/// already given.
pub(super) const UPDATE: &str = r#"
local n = redis.call('HGET', KEYS[1], ARGV[1])
if n then return {0, tonumber(n)} end
n = redis.call('HINCRBY', KEYS[2], 'updates', 1)
redis.call('HSET', KEYS[1], ARGV[1], n)
return {1, n}
"#;
