-- Renews the leases of a process's open streams of one identity.
-- KEYS: 1 the identity's open streams (see limit-stream-acquire.lua).
-- ARGV: 1 lease (ms), 2… the members (`<owner>:<n>`) the process still holds.
-- A member whose lease ran out while its process could not reach Redis is added again: the
-- stream is still open, so it counts again (the identity may be over its cap until one ends).
-- Returns the number of members renewed.
local lease = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], lease)
return #ARGV - 1
