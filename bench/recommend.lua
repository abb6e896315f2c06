-- wrk script: /recommend for random books among the first N ids (N from the BOOKS env var),
-- with the default k (DEFAULT_K, 5), as the reference predictor is called.
local n = tonumber(os.getenv("BOOKS") or "10000")
math.randomseed(42)
request = function()
  return wrk.format("GET", "/recommend?book_id=" .. math.random(1, n))
end
