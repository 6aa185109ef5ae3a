-- Bodies that are not JSON (a generic source's form, XML, text or binary
-- body): the Content-Type they came with, which deliveries send them with,
-- and the bytes themselves when text cannot hold them (not UTF-8, or with
-- NUL). body keeps every other body; at most one of the two is set.
ALTER TABLE events ADD COLUMN content_type text NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN raw_body bytea;
