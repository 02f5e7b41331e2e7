-- Helpers prepended to every script of the Redis store (store/redis/scripts.ts). Every script
-- gets the same first two arguments: ARGV[1], the prefix of the node heartbeat keys (a node is
-- alive while `<prefix><node>` exists); ARGV[2], the separator of node and user in a presence
-- hash field (`<node><separator><user>`).
local NODE_PREFIX, SEP = ARGV[1], ARGV[2]

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

-- Whether a node is alive: its heartbeat key exists.
local function node_alive(node)
  return redis.call('EXISTS', NODE_PREFIX .. node) == 1
end

-- Whether `user` has a subscription to the room (presence hash `key`) on a node that is alive.
local function live(key, user)
  for _, f in ipairs(redis.call('HKEYS', key)) do
    local node, u = parse_field(f)
    if u == user and node_alive(node) then return true end
  end
  return false
end

