-- A small shop with planted problems: NULL emails, duplicate emails, orders of customers that are gone.
CREATE TABLE customers (
    id      bigint PRIMARY KEY,
    email   text,
    country text
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
       (ARRAY['DE', 'FR', 'NL', 'PL'])[1 + g % 4]
  FROM generate_series(1, 1000) AS g;
INSERT INTO orders
SELECT g,
       CASE WHEN g % 250 = 0 THEN 5000 + g ELSE 1 + g % 1000 END,   -- 8 orders of missing customers
       round((g % 400) * 1.25, 2),
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * INTERVAL '1 hour'
  FROM generate_series(1, 2000) AS g;
ANALYZE customers;
ANALYZE orders;
