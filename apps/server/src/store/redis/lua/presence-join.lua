-- One more subscription of a user on a node to a room. The user is no longer away.
-- KEYS, all in the room's slot: 1 the room's presence hash, 2 its away hash.
-- ARGV (after the two of lib.lua): 3 node, 4 user, 5 now (ms, the subscription's start).
-- Returns 1 when no live node had a subscription of that user before (publish JOIN), else 0.
-- (The caller adds the room to the set of rooms with presence, which lives in another slot.)
local node, user, now = ARGV[3], ARGV[4], ARGV[5]
local field = node .. SEP .. user
local cur = redis.call('HGET', KEYS[1], field)
redis.call('HDEL', KEYS[2], user)
if cur then
  local sep = string.find(cur, ':', 1, true)
  redis.call('HSET', KEYS[1], field, (tonumber(string.sub(cur, 1, sep - 1)) + 1) .. string.sub(cur, sep))
  return 0
end
redis.call('HSET', KEYS[1], field, '1:' .. now)
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local other, u = parse_field(f)
  if u == user and other ~= node and node_alive(other) then return 0 end
end
return 1
