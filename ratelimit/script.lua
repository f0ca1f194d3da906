-- tocsin rate limiter: the only code that changes bucket state (ratelimit/keys.py names the keys).
--
-- The clock is Redis TIME, read here, never a client's clock. Times are integer microseconds and
-- are written with string.format, because Lua's own number-to-string keeps only 14 digits.
--
-- acquire: KEYS = meta, bucket 1..k
--          ARGV = 'acquire', n, max_wait_us, per bucket: rate (tokens/s), capacity, debt; then
--                 ttl_margin_ms (how long a key outlives the moment its bucket is full again)
--   Takes n tokens from every bucket or from none. A bucket may go below zero: that is a lease
--   reserved ahead, and the answer says how long the caller waits before it may start. When the
--   wait would pass max_wait_us nothing is taken and the answer is a refusal with a retry-after.
--   debt (tokens a replica granted itself from its fallback bucket) is taken in every case.
--   Returns {granted 1|0, wait_us (granted) or retry_after_us (refused), limiting bucket 1..k or 0,
--            rules_version, now_us (the Redis time the answer counts from)}.
-- heartbeat: KEYS = meta, replicas; ARGV = 'heartbeat', replica id, ttl_us
--   Returns {live replicas, rules_version}.

if redis.replicate_commands then
  redis.replicate_commands()
end

local mode = ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local meta = KEYS[1]

local function us(x)
  return string.format('%d', x)
end

if mode == 'heartbeat' then
  local ttl = tonumber(ARGV[3])
  redis.call('ZADD', KEYS[2], us(now), ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', us(now - ttl))
  redis.call('PEXPIRE', KEYS[2], us(math.ceil(ttl / 1000)))
  local version = tonumber(redis.call('HGET', meta, 'rules_version') or '0')
  return {redis.call('ZCARD', KEYS[2]), version}
end

if mode ~= 'acquire' then
  return redis.error_reply('tocsin ratelimit: unknown mode ' .. tostring(mode))
end

local n = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local m = redis.call('HMGET', meta, 'epoch', 'rules_version')
local epoch = tonumber(m[1])
if not epoch then
  -- This Redis has never run the script (first start, restart without persistence, flush):
  -- every bucket without state counts as emptied now, so lost state never becomes a free burst.
  epoch = now
  redis.call('HSET', meta, 'epoch', us(now))
end
local version = tonumber(m[2]) or 0

local count = #KEYS - 1
local levels = {}
local wait = 0
local limiting = 0
for i = 1, count do
  local rate = tonumber(ARGV[1 + 3 * i])
  local capacity = tonumber(ARGV[2 + 3 * i])
  local debt = tonumber(ARGV[3 + 3 * i])
  local state = redis.call('HMGET', KEYS[i + 1], 'tokens', 'ts', 'exp')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  local exp = tonumber(state[3])
  local level
  if tokens == nil or ts == nil or exp == nil or now >= exp then
    -- No state, or state past its own expiry: full, unless this Redis is younger than a refill.
    level = math.min(capacity, rate * math.max(0, now - epoch) / 1e6)
  else
    level = math.min(capacity, tokens + rate * math.max(0, now - ts) / 1e6)
  end
  level = level - debt
  levels[i] = level
  if level < n then
    local need = (n - level) / rate * 1e6
    if need > wait then
      wait = need
      limiting = i
    end
  end
end

local granted = wait <= max_wait
for i = 1, count do
  local rate = tonumber(ARGV[1 + 3 * i])
  local capacity = tonumber(ARGV[2 + 3 * i])
  local debt = tonumber(ARGV[3 + 3 * i])
  if granted or debt > 0 then
    local level = levels[i]
    if granted then
      level = level - n
    end
    local refill = math.ceil((capacity - level) / rate * 1e6)
    redis.call('HSET', KEYS[i + 1], 'tokens', string.format('%.17g', level), 'ts', us(now),
      'exp', us(now + refill))
    redis.call('PEXPIRE', KEYS[i + 1], us(math.ceil(refill / 1000) + tonumber(ARGV[4 + 3 * count])))
  end
end

if granted then
  return {1, math.ceil(wait), limiting, version, now}
end
return {0, math.ceil(wait - max_wait), limiting, version, now}
