-- wrk script: POST :recommend with a basket of 5 random books among the first N ids (N from
-- the BOOKS env var) and k = 10: the cart page's call.
local n = tonumber(os.getenv("BOOKS") or "10000")
math.randomseed(42)
request = function()
  local seeds = {}
  for i = 1, 5 do seeds[i] = math.random(1, n) end
  local body = '{"book_ids":[' .. table.concat(seeds, ",") .. '],"k":10}'
  return wrk.format("POST", "/v1/models/recommender:recommend", {["Content-Type"] = "application/json"}, body)
end
