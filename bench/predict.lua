-- wrk script: POST :predict with one random instance.
local n = tonumber(os.getenv("BOOKS") or "10000")
math.randomseed(42)
request = function()
  local body = '{"instances":[{"book_id":' .. math.random(1, n) .. ',"k":10}]}'
  return wrk.format("POST", "/v1/models/recommender:predict", {["Content-Type"] = "application/json"}, body)
end
