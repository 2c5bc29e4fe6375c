-- example.deploy.lua - the example deployment: the shipped processors over one
-- store. `make demo` runs it with `sluice run --until-caught-up`.
return {
  store = "data/example.db",
  durability = "full",
  schemas = { "../schemas" },
  processors = {
    counter = { script = "counter.lua", streams = "counters/*" },
    echo = { script = "echo.lua", streams = "echo/*" },
    circuit_breaker = { script = "circuit_breaker.lua", streams = "api/*" },
    webhook = { script = "webhook.lua", streams = "webhooks/*" },
  },
}
