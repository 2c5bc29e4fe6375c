-- counter.lua - counts increments per stream; emits counter/milestone when the
-- count crosses 100.
return {
  contract = "counter",
  reduce = {
    ["counter/incremented"] = function(state, event)
      return { count = state.count + event.payload.by }
    end,
    ["counter/reset"] = function() return { count = 0 } end,
  },
  processEvent = {
    ["counter/incremented"] = function(event, ctx)
      if ctx.state.count >= 100 and ctx.previousState.count < 100 then
        ctx.append("counter/milestone", { count = ctx.state.count })
      end
    end,
  },
}
