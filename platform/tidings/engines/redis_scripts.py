"""The Lua scripts of the Redis presence store: each runs atomically on the server.

A script is one command, so it can share a pipeline with other callers' commands
(``redis_shared``), where a ``MULTI``/``EXEC`` block of its own cannot; the presence
updates of connecting and closing sockets are scripts for that reason.
"""

# Mirrors tidings.core.ratelimit.take step by step (and MemoryPresenceStore.take_token's
# idle expiry), in the same IEEE-754 double arithmetic and operation order, so the Redis
# engine makes exactly the decisions the in-memory one makes: keep the two in sync.
# Floats cross the boundary as "%.17g" / Python repr strings, which round-trip exactly
# (a Lua number returned as such would be truncated to an integer by Redis).
# KEYS[1] bucket hash; ARGV: rate, burst, now, cost, idle expiry (s), key PX (ms).
TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local idle = tonumber(ARGV[5])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'updated', 'expires')
local tokens
if held[1] and held[2] and held[3] and tonumber(held[3]) > now then
  local elapsed = math.max(0.0, now - tonumber(held[2]))
  tokens = math.min(burst, tonumber(held[1]) + elapsed * rate)
else
  tokens = burst
end
local allowed = 0
local wait = 0.0
if tokens >= cost then
  allowed = 1
  tokens = tokens - cost
elseif rate > 0 then
  wait = (cost - tokens) / rate
else
  wait = math.huge
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'updated', string.format('%.17g', now), 'expires', string.format('%.17g', now + idle))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {allowed, string.format('%.17g', wait)}
"""

# KEYS[1] counter; ARGV[1] TTL (ms), set only when INCR creates the key (at 1).
INCR = """
local value = redis.call('INCR', KEYS[1])
if value == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return value
"""


# KEYS[1] expiry zset, KEYS[2] last-seen hash; ARGV: now, limit, devices-index key prefix.
# One script, so each expired device goes to exactly one reaper.
REAP = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
local out = {}
for i = 1, #due, 2 do
  local member, expired_at = due[i], due[i + 1]
  redis.call('ZREM', KEYS[1], member)
  local sep = string.find(member, '\\n', 1, true)
  local user, device = string.sub(member, 1, sep - 1), string.sub(member, sep + 1)
  redis.call('SREM', ARGV[3] .. user, device)
  local seen = tonumber(redis.call('HGET', KEYS[2], user) or '0')
  if tonumber(expired_at) > seen then
    redis.call('HSET', KEYS[2], user, string.format('%.17g', tonumber(expired_at)))
  end
  out[#out + 1] = member
end
return out
"""

# KEYS[1] device key, KEYS[2] user's devices index, KEYS[3] expiry zset, KEYS[4] last-seen
# hash; ARGV: TTL (ms), device id, expiry score (s), expiry member, user id.
# The index lives as long as its longest-lived device key: PEXPIRE NX sets a first
# expiry, GT only ever extends it. Answers the user's last-seen time (or nil).
SET_ONLINE = """
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1], 'NX')
redis.call('PEXPIRE', KEYS[2], ARGV[1], 'GT')
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return redis.call('HGET', KEYS[4], ARGV[5])
"""

# KEYS[1] device key, KEYS[2] user's devices index, KEYS[3] last-seen hash, KEYS[4]
# expiry zset; ARGV: device id, user id, now (repr), expiry member, device-key prefix
# of the user. Answers 1 if another device of the user is still online, else 0.
SET_OFFLINE = """
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[4])
for _, device in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[5] .. device) == 1 then
    return 1
  end
end
return 0
"""
