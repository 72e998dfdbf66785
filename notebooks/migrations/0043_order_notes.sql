-- 0043: a note on each order, non-negative amounts, and an index for the customer's order list.
ALTER TABLE orders ADD COLUMN note text NOT NULL DEFAULT '';
ALTER TABLE orders ADD CONSTRAINT orders_amount_nonnegative CHECK (amount >= 0);
CREATE INDEX CONCURRENTLY orders_customer_placed_idx ON orders (customer_id, placed_at);
