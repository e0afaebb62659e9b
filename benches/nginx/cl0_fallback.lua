-- The /CL0 fallback redirector: what people put on their tracking domain when the tracking
-- service behind it breaks. It takes the SES-style click path
--   /CL0/{percent-encoded target}/{version}/{message id}/{signature}
-- drops the three trailing segments, unescapes the target and redirects to it. Nothing is
-- verified: this is an open redirect, which is why mailtrack signs its links.
local uri = ngx.var.request_uri
local rest = string.sub(uri, 6) -- after "/CL0/"
local target = string.match(rest, "^(.-)/[^/]*/[^/]*/[^/]*$") or rest
ngx.redirect(ngx.unescape_uri(target), 302)
