-- One subscription fewer of a user on a node to a room.
-- KEYS, both in the room's slot: 1 the room's presence hash, 2 its away hash.
-- ARGV (after the two of lib.lua): 3 node, 4 user.
-- Returns 1 when the user has none left on any live node: the user is away from now (KEYS[2]),
-- and their LEAVE is due after the grace. Else 0.
local node, user = ARGV[3], ARGV[4]
local field = node .. SEP .. user
local cur = redis.call('HGET', KEYS[1], field)
if not cur then return 0 end
local sep = string.find(cur, ':', 1, true)
local count = tonumber(string.sub(cur, 1, sep - 1)) - 1
if count > 0 then
  redis.call('HSET', KEYS[1], field, count .. string.sub(cur, sep))
  return 0
end
redis.call('HDEL', KEYS[1], field)
if live(KEYS[1], user) then return 0 end
redis.call('HSET', KEYS[2], user, now_ms())
return 1
