-- The room's joined users whose LEAVE is owed: no subscription on a live node, and away for at
-- least the grace. A joined user with no live subscription and no away time (their node died,
-- or stopped before it could record them) is away from now.
-- KEYS: 1 the room's joined hash, 2 its presence hash, 3 its away hash, 4 the set of rooms with
--   joined users.
-- ARGV (after the two of lib.lua): 3 the grace (ms), 4 room.
-- Returns the users owed a LEAVE.
local grace, room = tonumber(ARGV[3]), ARGV[4]
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[4], room)
  return {}
end
local alive, present = {}, {}
for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
  local node, user = parse_field(f)
  if alive[node] == nil then alive[node] = node_alive(node) end
  if alive[node] then present[user] = true end
end
local now = now_ms()
local owed = {}
for _, user in ipairs(redis.call('HKEYS', KEYS[1])) do
  if not present[user] then
    local away = redis.call('HGET', KEYS[3], user)
    if not away then
      redis.call('HSET', KEYS[3], user, now)
    elseif now - tonumber(away) >= grace then
      table.insert(owed, user)
    end
  end
end
return owed
