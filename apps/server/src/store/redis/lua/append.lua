-- Appends one message atomically: idempotency check, next offset (INCR), XADD with the offset as
-- the entry ID (`<offset>-0`, so history reads by offset are range reads), and SPUBLISH to the
-- room's feed. Redis runs a script alone, so offsets are gap-free and the feed sees them in order
-- even when several nodes append to one room at once. With a replica wait the caller passes no
-- channel and publishes the message itself once replicas acknowledged it (message-store.ts).
-- JOIN and LEAVE keep the room's joined hash, in the same script: a JOIN for a joined user is not
-- stored, nor a LEAVE for a user who is not joined, still has a subscription on a live node, or
-- has been away less than the grace; so each LEAVE is stored once, whichever nodes try.
-- The feed is a sharded pub/sub channel (SPUBLISH) with the room's hash tag: on Redis Cluster it
-- lives on the shard that owns the room's keys, and Redis 7 serves it on a single server too.
-- The cross-room sets (rooms, rooms with joined users) are the caller's: they live in other
-- slots (message-store.ts).
-- The room log's epoch (KEYS[7]) is created with the log's first stored message (again after
-- FLUSHALL lost it), and replaced before storing when the log is behind what the caller saw in
-- that epoch (ARGV[16], ARGV[17]: offsets went back; store/redis/seen-offsets.ts); with it, the
-- last offset before the epoch's first message (KEYS[8], its base). The message is published
-- and returned with its epoch ("e"); the stream and the idempotency key keep it without.
--
-- KEYS, all in the room's slot: 1 the room's offset counter, 2 its stream, 3 the idempotency
--   key, 4 the room's joined hash, 5 its presence hash, 6 its away hash, 7 its epoch, 8 its
--   epoch's base.
-- ARGV (after the two of lib.lua): 3 room, 4 id, 5 user, 6 content, 7 kind ('chat', 'join' or
--   'leave'), 8 the kind's stored code, 9 timestamp (ms), 10 client message id ('' for none),
--   11 idempotency key TTL (s), 12 the stream's MAXLEN (0: no trim), 13 the feed channel ('':
--   publish nothing), 14 the presence grace (ms), 15 a new epoch for the log if it needs one,
--   16 and 17 the epoch and highest offset the caller saw the room in ('' and 0: nothing),
--   18 the append's W3C traceparent (absent: none; tracing off or not sampled).
-- The traceparent goes into the published (and returned) message as "tp", never into the stream
-- or the idempotency key: it is for the delivery spans of the nodes the feed reaches
-- (telemetry/traced-store.ts), and costs no byte when tracing is off.
-- Returns "0<json>" for a new message, "3<json>" for a new LEAVE after which nobody is joined,
-- "1<json>" for the original of a repeated key, "2<epoch>" for a JOIN or LEAVE not stored.
local room, id, user, content = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local kind, code, ts, cmid = ARGV[7], tonumber(ARGV[8]), ARGV[9], ARGV[10]
local ttl, maxlen, channel, grace = ARGV[11], tonumber(ARGV[12]), ARGV[13], tonumber(ARGV[14])
-- The epoch, and a message's JSON with it.
local epoch = redis.call('GET', KEYS[7]) or ''
local function with_epoch(json)
  return string.sub(json, 1, -2) .. ',"e":"' .. epoch .. '"}'
end
if cmid ~= '' then
  local prev = redis.call('GET', KEYS[3])
  if prev then return '1' .. with_epoch(prev) end
end
if kind == 'join' then
  if redis.call('HEXISTS', KEYS[4], user) == 1 then return '2' .. epoch end
elseif kind == 'leave' then
  if redis.call('HEXISTS', KEYS[4], user) == 0 or live(KEYS[5], user) then return '2' .. epoch end
  local away = redis.call('HGET', KEYS[6], user)
  if not away or now_ms() - tonumber(away) < grace then return '2' .. epoch end
end
if epoch == '' or (epoch == ARGV[16]
    and tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[17])) then
  epoch = ARGV[15]
  redis.call('SET', KEYS[7], epoch)
  redis.call('SET', KEYS[8], redis.call('GET', KEYS[1]) or '0')
end
local offset = redis.call('INCR', KEYS[1])
local msg = cjson.encode({o = offset, id = id, r = room, u = user, c = content, t = code,
  ts = ts, k = cmid})
if maxlen > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, offset .. '-0', 'm', msg)
else
  redis.call('XADD', KEYS[2], offset .. '-0', 'm', msg)
end
if cmid ~= '' then redis.call('SET', KEYS[3], msg, 'EX', ttl) end
local status = '0'
if kind == 'join' then
  redis.call('HSET', KEYS[4], user, ts)
elseif kind == 'leave' then
  redis.call('HDEL', KEYS[4], user)
  redis.call('HDEL', KEYS[6], user)
  if redis.call('HLEN', KEYS[4]) == 0 then status = '3' end
end
local out = with_epoch(msg)
local tp = ARGV[18] or ''
if tp ~= '' and string.match(tp, '^[%x%-]+$') then
  out = string.sub(out, 1, -2) .. ',"tp":"' .. tp .. '"}'
end
if channel ~= '' then redis.call('SPUBLISH', channel, out) end
return status .. out
