-- A small shop with planted problems: NULL emails, duplicate emails, orders of customers that are gone.
CREATE TABLE customers (
    id           bigint PRIMARY KEY,
    email        text,
    country      text,
    signed_up_at timestamptz NOT NULL
);
CREATE TABLE orders (
    id          bigint PRIMARY KEY,
    customer_id bigint,
    amount      numeric(12, 2),
    placed_at   timestamptz NOT NULL DEFAULT '2026-01-01 00:00:00+00'
);
INSERT INTO customers
SELECT g,
       CASE WHEN g % 97 = 0 THEN NULL                    -- 10 customers without an email
            WHEN g % 101 = 0 THEN 'shared@example.com'   -- 9 customers sharing one email
            ELSE 'customer' || g || '@example.com' END,
       (ARRAY['DE', 'FR', 'NL', 'PL'])[1 + g % 4],
       -- a sign-up every 12 hours from March 2025; the customers without an email all signed up after the
       -- sign-up form changed, in March 2026 (a plot of the violations over time shows when it started)
       CASE WHEN g % 97 = 0 THEN TIMESTAMPTZ '2026-03-02 00:00:00+00' + g * INTERVAL '1 hour'
            ELSE TIMESTAMPTZ '2025-03-01 00:00:00+00' + g * INTERVAL '12 hours' END
  FROM generate_series(1, 1000) AS g;
INSERT INTO orders
SELECT g,
       CASE WHEN g % 250 = 0 THEN 5000 + g ELSE 1 + g % 1000 END,   -- 8 orders of missing customers
       round((g % 400) * 1.25, 2),
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * INTERVAL '1 hour'
  FROM generate_series(1, 2000) AS g;
ANALYZE customers;
ANALYZE orders;
