-- Helpers prepended to every script of the Redis store (store/redis/scripts.ts). Every script
-- gets the same first two arguments: ARGV[1], the nodes the caller found dead (their heartbeat
-- key expired), each followed by the separator ('' for none); ARGV[2], the separator of node and
-- user in a presence hash field (`<node><separator><user>`).
-- A script reads no node heartbeat key itself: those keys live in other hash slots, and a script
-- on Redis Cluster may touch only the keys it declares, all in one slot. A node the caller did
-- not list is alive (it may have started since the caller looked): a node dying meanwhile only
-- delays its members' LEAVE to the next sweep.
local DEAD_LIST, SEP = ARGV[1], ARGV[2]
local DEAD = {}
do
  local i = 1
  while i <= #DEAD_LIST do
    local j = string.find(DEAD_LIST, SEP, i, true)
    DEAD[string.sub(DEAD_LIST, i, j - 1)] = true
    i = j + #SEP
  end
end

-- Redis's clock in ms (TIME), so that every node measures absences on one clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The node and the user of a presence hash field.
local function parse_field(f)
  local s = string.find(f, SEP, 1, true)
  return string.sub(f, 1, s - 1), string.sub(f, s + 1)
end

-- Whether a node is alive: the caller did not find it dead.
local function node_alive(node)
  return not DEAD[node]
end

-- Whether `user` has a subscription to the room (presence hash `key`) on a node that is alive.
local function live(key, user)
  for _, f in ipairs(redis.call('HKEYS', key)) do
    local node, u = parse_field(f)
    if u == user and node_alive(node) then return true end
  end
  return false
end

