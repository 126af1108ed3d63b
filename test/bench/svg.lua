-- wrk script: POST /svg with a 1000-line CSV body ("x, y" integers, some
-- negative, some without the space after the comma), generated once per
-- thread from a fixed-seed Park-Miller generator (products stay below 2^53,
-- exact in Lua's doubles) so every run and every server gets the same bytes.
local req

function init(args)
    local lines = tonumber(args[1]) or 1000
    local state = 12345
    local function rand(range)
        state = (state * 16807) % 2147483647
        return state % (2 * range + 1) - range
    end
    local parts = {}
    for i = 1, lines do
        local sep = (i % 3 == 0) and "," or ", "
        parts[i] = rand(5000) .. sep .. rand(5000) .. "\n"
    end
    req = wrk.format("POST", "/svg", { ["Content-Type"] = "text/csv" }, table.concat(parts))
end

function request()
    return req
end
