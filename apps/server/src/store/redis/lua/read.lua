-- Reads a page of a room's history together with the log's epoch and last offset, in one atomic
-- step: a page is never labelled with the epoch of another log (a FLUSHALL between two separate
-- reads). Like append.lua, it first gives the log a new epoch when the log is behind what the
-- caller saw in its epoch (offsets went back; store/redis/seen-offsets.ts), with the last offset
-- as the new epoch's base. A room with no log gets no epoch here: the log's first message
-- creates it (append.lua).
--
-- KEYS, all in the room's slot: 1 the room's offset counter, 2 its stream, 3 its epoch, 4 its
--   epoch's base (the last offset before the epoch's first message).
-- ARGV (after the two of lib.lua): 3 'XRANGE' (oldest first) or 'XREVRANGE' (newest first),
--   4 and 5 the range's start and end as that command takes them, 6 COUNT, 7 a new epoch for the
--   log if it needs one, 8 and 9 the epoch and highest offset the caller saw the room in ('' and
--   0: nothing).
-- Returns {epoch ('' for none), last offset, the entries as the command returns them, the
-- epoch's base (-1 when not recorded)}.
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[3]) or ''
if epoch ~= '' and epoch == ARGV[8] and last < tonumber(ARGV[9]) then
  epoch = ARGV[7]
  redis.call('SET', KEYS[3], epoch)
  redis.call('SET', KEYS[4], last)
end
local command = ARGV[3] == 'XREVRANGE' and 'XREVRANGE' or 'XRANGE'
local entries = redis.call(command, KEYS[2], ARGV[4], ARGV[5], 'COUNT', ARGV[6])
return {epoch, last, entries, tonumber(redis.call('GET', KEYS[4]) or '-1')}
