-- wrk script: POST /svg with a 1000-line CSV body ("x, y" integers, some
-- negative, some without the space after the comma), generated once per
-- thread from a fixed-seed linear congruential generator so every run and
-- every server gets the same bytes.
local req

function init(args)
    local lines = tonumber(args[1]) or 1000
    local state = 12345
    local function rand(range)
        state = (state * 1103515245 + 12345) % 2147483648
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
