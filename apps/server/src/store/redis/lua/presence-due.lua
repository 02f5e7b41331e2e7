-- The room's joined users whose LEAVE is owed: no subscription on a live node, and away for at
-- least the grace. A joined user with no live subscription and no away time (their node died,
-- or stopped before it could record them) is away from now.
-- KEYS, all in the room's slot: 1 the room's joined hash, 2 its presence hash, 3 its away hash.
-- ARGV (after the two of lib.lua): 3 the grace (ms).
-- Returns the number of joined users, then the users owed a LEAVE (the caller drops a room with
-- nobody joined from the set of such rooms, which lives in another slot).
local grace = tonumber(ARGV[3])
local joined = redis.call('HLEN', KEYS[1])
if joined == 0 then return {0} end
local present = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
  local node, user = parse_field(f)
  if node_alive(node) then present[user] = true end
end
local now = now_ms()
local owed = {joined}
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
