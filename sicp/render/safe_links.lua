-- Keep only links and images to web pages, mail, anchors and local files: markdown link
-- syntax in a printed text ([x](javascript:...)) becomes its plain text.
local function safe(target)
  local scheme = target:match("^([%a][%w+.-]*):")
  return scheme == nil or scheme == "http" or scheme == "https" or scheme == "mailto"
end
function Link(el)
  if not safe(el.target) then return el.content end
end
function Image(el)
  if not safe(el.src) then return el.caption end
end
