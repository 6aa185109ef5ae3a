-- Token usage per tenant and provider, kept for cost reporting and limits.
CREATE TABLE usage (
    tenant_id      text NOT NULL,
    provider       text NOT NULL,
    day            date NOT NULL,
    requests       bigint NOT NULL DEFAULT 0,
    input_tokens   bigint NOT NULL DEFAULT 0,
    output_tokens  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, provider, day)
);
