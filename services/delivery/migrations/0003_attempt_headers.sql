-- What the receiver answered besides its status and body excerpt: its
-- response headers (bounded), for debugging a delivery.
ALTER TABLE attempts ADD COLUMN response_headers jsonb NOT NULL DEFAULT '{}';
