-- echo.lua - answers each echo/input-received with echo/output-echoed {seen}, the
-- input's payload, keyed by the input's offset so a redelivery never echoes twice.
return {
  contract = "echo",
  reduce = {
    ["echo/input-received"] = function(state)
      return { received = state.received + 1 }
    end,
  },
  processEvent = {
    ["echo/input-received"] = function(event, ctx)
      ctx.append("echo/output-echoed", { seen = event.payload },
                 { idempotencyKey = "echo:" .. event.offset })
    end,
  },
}
