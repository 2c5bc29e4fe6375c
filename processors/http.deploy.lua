-- http.deploy.lua - the example deployment with the HTTP interface: the counter and
-- echo processors over one store, served on 127.0.0.1:8428 by `sluice run` (see the
-- README, "The HTTP interface"):
--   sluice run processors/http.deploy.lua &
--   curl -s -X POST http://127.0.0.1:8428/streams/counters%2Fa \
--        -d '{"type":"counter/incremented","payload":{"by":1}}'
return {
  store = "data/http.db",
  durability = "full",
  schemas = { "../schemas" },
  http = "127.0.0.1:8428",
  -- Off loopback ("0.0.0.0:8428") a token is needed: name the variable holding it.
  -- httpToken = "SLUICE_HTTP_TOKEN",
  httpMaxBody = "16MiB",
  processors = {
    counter = { script = "counter.lua", streams = "counters/*" },
    echo = { script = "echo.lua", streams = "echo/*" },
  },
}
