-- A source's secret can be rotated: the previous one keeps verifying until it
-- expires. A disabled source answers 410 and accepts nothing.
ALTER TABLE sources
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_expires_at timestamptz,
    ADD COLUMN disabled_at timestamptz;
