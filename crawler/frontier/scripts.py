"""The Lua scripts of the shared frontier (shared.py has the design).

Each script is one atomic change to a
crawl's keys (``c:{crawl}:...``); all start with the same ARGV (key prefix,
per-host limit, first limit, delay ms, max pages or -1) and read Redis's clock
with TIME. Scripts with a shebang run whole or not at all: without
``allow-oom``, Redis refuses them up front when it is at maxmemory.
"""

from __future__ import annotations

from crawler.frontier.politeness import BACKOFF_FLOOR, THROTTLE_STATUSES

# The politeness rule is politeness.py's, one source for Python and Lua: these
# values are written into the scripts' text.
BACKOFF_FLOOR_MS = round(BACKOFF_FLOOR * 1000)
_THROTTLED = " or ".join(f"status == {status}" for status in sorted(THROTTLE_STATUSES))
# Added to a host's gap: its requests leave from several machines, whose time
# from lease to request differs; the margin keeps the gap whole at the server.
GAP_MARGIN_MS = 20
# With --max-pages, new pages are queued until this many times --max-pages have
# been: the crawl can never lease more, and Redis need not hold them.
ADMISSION_FACTOR = 2

_COMMON = (
    (
        """
local P = ARGV[1]
local first_limit = tonumber(ARGV[3])
local delay_ms = tonumber(ARGV[4])
local max_pages = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local F = P .. 'f'

local function flag_of(item)
  local tab = string.find(item, '\\t', 1, true)
  if not tab then return '' end
  return string.sub(item, tab + 1, tab + 1)
end

local function exhausted()
  if max_pages < 0 then return false end
  return tonumber(redis.call('HGET', F, 'started') or '0') >= max_pages
end

local function schedule(h)
  local q = P .. 'q:' .. h
  local head = redis.call('LINDEX', q, 0)
  if not head then
    redis.call('ZREM', P .. 'ready', h)
    return
  end
  local s = redis.call('HMGET', P .. 'h:' .. h, 'last', 'nb', 'gap', 'bo', 'lim', 'inf')
  local limit = tonumber(s[5] or first_limit)
  if tonumber(s[6] or '0') >= limit or (flag_of(head) == 'p' and exhausted()) then
    redis.call('ZREM', P .. 'ready', h)
    return
  end
  local gap = math.max(tonumber(s[3] or delay_ms), tonumber(s[4] or '0'))
  if gap > 0 then gap = gap + MARGIN end
  local due = 0
  if s[1] then due = tonumber(s[1]) + gap end
  due = math.max(due, tonumber(s[2] or '0'))
  redis.call('ZADD', P .. 'ready', due, h)
end

-- When the crawl's next entry may start (Redis ms), -1 if none is waiting.
local function next_due()
  local due = -1
  for _, key in ipairs({'ready', 'delayed'}) do
    local top = redis.call('ZRANGE', P .. key, 0, 0, 'WITHSCORES')
    if #top > 0 and (due < 0 or tonumber(top[2]) < due) then due = tonumber(top[2]) end
  end
  return due
end

local function enqueue(first)
  local result = {}
  local touched = {}
  local added, dups, capped, conts, beyond = 0, 0, 0, 0, 0
  local cap = tonumber(ARGV[first])
  local admit = -1
  if max_pages >= 0 then admit = max_pages * ADMISSION end
  local admitted = tonumber(redis.call('HGET', F, 'admitted') or '0')
  for i = first + 1, #ARGV, 5 do
    local h, item = ARGV[i + 2], ARGV[i + 3]
    local q = P .. 'q:' .. h
    local page = flag_of(item) == 'p'
    if page and admit >= 0 and admitted >= admit then
      beyond = beyond + 1
      result[#result + 1] = 3
    elseif redis.call('LLEN', q) >= cap then
      capped = capped + 1
      result[#result + 1] = 2
    elseif redis.call('SADD', P .. 'seen:' .. ARGV[i], ARGV[i + 1]) == 0 then
      dups = dups + 1
      result[#result + 1] = 0
    else
      if ARGV[i + 4] == '1' then
        redis.call('LPUSH', q, item)
      else
        redis.call('RPUSH', q, item)
      end
      if flag_of(item) == 'c' then conts = conts + 1 end
      if page then admitted = admitted + 1 end
      added = added + 1
      touched[h] = true
      result[#result + 1] = 1
    end
  end
  redis.call('HINCRBY', F, 'pending', added)
  redis.call('HINCRBY', F, 'conts', conts)
  redis.call('HINCRBY', F, 'enqueued', added)
  redis.call('HINCRBY', F, 'duplicates', dups)
  redis.call('HINCRBY', F, 'capped', capped)
  redis.call('HINCRBY', F, 'beyond_max_pages', beyond)
  redis.call('HSET', F, 'admitted', admitted)
  for h in pairs(touched) do schedule(h) end
  return result
end
"""
    )
    .replace("MARGIN", str(GAP_MARGIN_MS))
    .replace("ADMISSION", str(ADMISSION_FACTOR))
)

# ARGV: common (5), settings JSON, crawl id, entry format, the ms a seed list's reader
# holds the ``listing`` key (0: no list), then as ENQUEUE. Returns 0 if the crawl
# existed. A crawl made from a seed list has meta ``list`` "" until its reader has
# queued the whole list (then the list's SHA-256), and ``listing`` while it reads.
_CREATE = (
    "#!lua\n"
    + _COMMON
    + """
if redis.call('HSETNX', P .. 'meta', 'settings', ARGV[6]) == 0 then return {0} end
redis.call('HSET', P .. 'meta', 'id', ARGV[7], 'format', ARGV[8], 'created', now,
  'status', 'running')
if tonumber(ARGV[9]) > 0 then
  redis.call('HSET', P .. 'meta', 'list', '')
  redis.call('SET', P .. 'listing', '1', 'PX', ARGV[9])
end
return {1, enqueue(10)}
"""
)

# ARGV: common (5), host cap, then (bucket, fingerprint, host, item, first) per URL.
# Returns each URL's result, then the crawl's next due (as ACK's answer ends).
_ENQUEUE = (
    "#!lua\n" + _COMMON + "\nlocal result = enqueue(6)\nresult[#result + 1] = next_due()\n"
    "return result\n"
)

# ARGV: common (5), n, lease ms. Returns now, done, next due, pending, leased, then
# (ticket, host, item) per lease; {LOST} alone when the crawl's meta hash is gone
# (FLUSHDB, or evicted): its counters and queues cannot be trusted, and the crawl
# must not be called finished.
LOST = -1
_LEASE = (
    "#!lua flags=allow-oom\n"
    + _COMMON
    + f"""
if redis.call('EXISTS', P .. 'meta') == 0 then return {{{LOST}}} end
"""
    + """
local n, lease_ms = tonumber(ARGV[6]), tonumber(ARGV[7])
for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', P .. 'delayed', m)
  local a = string.find(m, '\\n', 1, true)
  local b = string.find(m, '\\n', a + 1, true)
  local h = string.sub(m, a + 1, b - 1)
  redis.call('LPUSH', P .. 'q:' .. h, string.sub(m, b + 1))
  schedule(h)
end
local out = {}
for _ = 1, 2 * n + 8 do
  if #out >= 3 * n then break end
  local first = redis.call('ZRANGEBYSCORE', P .. 'ready', '-inf', now, 'LIMIT', 0, 1)
  if #first == 0 then break end
  local h = first[1]
  local q = P .. 'q:' .. h
  local item = redis.call('LINDEX', q, 0)
  if item and not (flag_of(item) == 'p' and exhausted()) then
    redis.call('LPOP', q)
    local f = flag_of(item)
    if f == 'p' then redis.call('HINCRBY', F, 'started', 1) end
    if f == 'c' then redis.call('HINCRBY', F, 'conts', -1) end
    redis.call('HINCRBY', F, 'pending', -1)
    local id = redis.call('INCR', P .. 'seq')
    redis.call('HSET', P .. 'lease:data', id, h .. '\\n' .. item)
    redis.call('ZADD', P .. 'leases', now + lease_ms, id)
    redis.call('HINCRBY', P .. 'h:' .. h, 'inf', 1)
    redis.call('HSET', P .. 'h:' .. h, 'last', now)
    out[#out + 1] = id
    out[#out + 1] = h
    out[#out + 1] = item
  end
  schedule(h)
end
local pending = tonumber(redis.call('HGET', F, 'pending') or '0')
local conts = tonumber(redis.call('HGET', F, 'conts') or '0')
local leased = redis.call('ZCARD', P .. 'leases')
local done = 0
if leased == 0 and (pending <= 0 or (exhausted() and conts <= 0)) then
  done = 1
  redis.call('HSET', P .. 'meta', 'status', 'finished')
end
local result = {now, done, next_due(), pending, leased}
for _, v in ipairs(out) do result[#result + 1] = v end
return result
"""
)

# ARGV: common (5), back-off cap ms, k, then per ack (ticket, status, retry-after
# ms, continuation, delay ms, m, then m (field, delta) pairs: its record's
# counters, added only if the ack holds), then (field, delta) pairs for the
# stats hash. Returns the stale tickets (their leases had expired and were
# taken back: another visit stands for them), then the crawl's next due (Redis
# ms, -1 if nothing waits): a member waiting to lease learns whether an ack or
# an add made something due sooner than it knew.
_ACK = (
    "#!lua flags=allow-oom\n"
    + _COMMON
    + """
local cap_ms = tonumber(ARGV[6])
local k = tonumber(ARGV[7])
local acked, stale = 0, {}
local i = 8
for _ = 1, k do
  local id = ARGV[i]
  local m = tonumber(ARGV[i + 5])
  if redis.call('ZREM', P .. 'leases', id) == 0 then
    stale[#stale + 1] = id
  else
    for j = i + 6, i + 4 + 2 * m, 2 do
      redis.call('HINCRBY', P .. 'stats', ARGV[j], ARGV[j + 1])
    end
    local data = redis.call('HGET', P .. 'lease:data', id)
    redis.call('HDEL', P .. 'lease:data', id)
    local h = string.sub(data, 1, string.find(data, '\\n', 1, true) - 1)
    local hk = P .. 'h:' .. h
    if redis.call('HINCRBY', hk, 'inf', -1) <= 0 then redis.call('HDEL', hk, 'inf') end
    local status = tonumber(ARGV[i + 1])
    if THROTTLED then
      local bo = tonumber(redis.call('HGET', hk, 'bo') or '0')
      redis.call('HSET', hk, 'bo', math.min(math.max(bo * 2, BACKOFF_FLOOR), cap_ms))
    elseif status and status < 400 then
      local bo = tonumber(redis.call('HGET', hk, 'bo') or '0')
      if bo > 0 then
        if bo / 2 >= BACKOFF_FLOOR then bo = bo / 2 else bo = 0 end
        redis.call('HSET', hk, 'bo', bo)
      end
    end
    if ARGV[i + 2] ~= '' then
      local nb = tonumber(redis.call('HGET', hk, 'nb') or '0')
      redis.call('HSET', hk, 'nb', math.max(nb, now + tonumber(ARGV[i + 2])))
    end
    local cont = ARGV[i + 3]
    if cont ~= '' then
      -- Counted by its letter, as a reclaimed lease is: a page that goes back as a page
      -- (a member stopped while it was in flight) was not started.
      local f = flag_of(cont)
      redis.call('HINCRBY', F, 'pending', 1)
      if f == 'c' then redis.call('HINCRBY', F, 'conts', 1) end
      if f == 'p' then redis.call('HINCRBY', F, 'started', -1) end
      local wait = tonumber(ARGV[i + 4])
      if wait > 0 then
        redis.call('ZADD', P .. 'delayed', now + wait, id .. '\\n' .. h .. '\\n' .. cont)
      else
        redis.call('LPUSH', P .. 'q:' .. h, cont)
      end
    end
    schedule(h)
    acked = acked + 1
  end
  i = i + 6 + 2 * m
end
redis.call('HINCRBY', F, 'acked', acked)
redis.call('HINCRBY', F, 'stale_acks', #stale)
for j = i, #ARGV, 2 do
  redis.call('HINCRBY', P .. 'stats', ARGV[j], ARGV[j + 1])
end
stale[#stale + 1] = next_due()
return stale
""".replace("BACKOFF_FLOOR", str(BACKOFF_FLOOR_MS)).replace("THROTTLED", _THROTTLED)
)

# ARGV: common (5), max, max attempts. Returns (host, item) per entry sent to the dead list.
_RECLAIM = (
    "#!lua flags=allow-oom\n"
    + _COMMON
    + """
local dead = {}
local ids = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
for _, id in ipairs(ids) do
  local data = redis.call('HGET', P .. 'lease:data', id)
  redis.call('ZREM', P .. 'leases', id)
  redis.call('HDEL', P .. 'lease:data', id)
  local nl = string.find(data, '\\n', 1, true)
  local h, item = string.sub(data, 1, nl - 1), string.sub(data, nl + 1)
  local hk = P .. 'h:' .. h
  if redis.call('HINCRBY', hk, 'inf', -1) <= 0 then redis.call('HDEL', hk, 'inf') end
  local tab = string.find(item, '\\t', 1, true)
  local attempts = ((tab and tonumber(string.sub(item, 1, tab - 1))) or 0) + 1
  local rest = tab and string.sub(item, tab + 1) or item
  local f = flag_of(item)
  redis.call('HINCRBY', F, 'reclaimed', 1)
  if attempts >= tonumber(ARGV[7]) then
    redis.call('RPUSH', P .. 'dead', h .. '\\n' .. attempts .. '\\t' .. rest)
    redis.call('HINCRBY', F, 'dead', 1)
    dead[#dead + 1] = h
    dead[#dead + 1] = attempts .. '\\t' .. rest
  else
    redis.call('LPUSH', P .. 'q:' .. h, attempts .. '\\t' .. rest)
    redis.call('HINCRBY', F, 'pending', 1)
    if f == 'p' then redis.call('HINCRBY', F, 'started', -1) end
    if f == 'c' then redis.call('HINCRBY', F, 'conts', 1) end
  end
  schedule(h)
end
return dead
"""
)

# ARGV: common (5), host, robots answer, Crawl-delay ms. The host's limit
# becomes --per-host and its gap the larger of --delay and the Crawl-delay.
_ROBOTS = (
    "#!lua flags=allow-oom\n"
    + _COMMON
    + """
local h = ARGV[6]
redis.call('SET', P .. 'robots:' .. h, ARGV[7])
redis.call('HSET', P .. 'h:' .. h, 'lim', ARGV[2], 'gap', math.max(delay_ms, tonumber(ARGV[8])))
schedule(h)
return 1
"""
)


# ARGV: common (5), host, the Redis time (ms) of the lease whose request leaves late.
# The host's next start counts from now, not from that lease; if another member has
# leased the host since, this request waits until a gap after that one. Returns the
# ms to wait.
_SENT = (
    "#!lua flags=allow-oom\n"
    + _COMMON
    + """
local h, leased = ARGV[6], tonumber(ARGV[7])
local s = redis.call('HMGET', P .. 'h:' .. h, 'last', 'gap', 'bo')
local last = tonumber(s[1] or '0')
local at = now
if last > leased then
  local gap = math.max(tonumber(s[2] or delay_ms), tonumber(s[3] or '0'))
  if gap > 0 then gap = gap + MARGIN end
  at = math.max(now, last + gap)
end
redis.call('HSET', P .. 'h:' .. h, 'last', at)
schedule(h)
return at - now
""".replace("MARGIN", str(GAP_MARGIN_MS))
)

# ARGV: common (5), lease ms, then the tickets this member holds.
_HEARTBEAT = (
    "#!lua flags=allow-oom\n"
    + _COMMON
    + """
for i = 7, #ARGV do
  redis.call('ZADD', P .. 'leases', 'XX', 'GT', now + tonumber(ARGV[6]), ARGV[i])
end
return 1
"""
)


SCRIPTS = {
    "create": _CREATE,
    "enqueue": _ENQUEUE,
    "lease": _LEASE,
    "ack": _ACK,
    "reclaim": _RECLAIM,
    "robots": _ROBOTS,
    "heartbeat": _HEARTBEAT,
    "sent": _SENT,
}
