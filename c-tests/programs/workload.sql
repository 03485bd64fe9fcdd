-- Allocator workload for scripts/test-programs.sh (sqlite3 family).
-- Run as: sqlite3 -batch test.db < workload.sql   (in a fresh temp dir)
-- Deterministic: no random(), no dates; every value derives from the row id.
PRAGMA journal_mode = WAL;
PRAGMA cache_size = -20000;
.headers off
.mode list
.separator |

CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL, tier INTEGER NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                     amount INTEGER NOT NULL, sku TEXT NOT NULL, note TEXT);
CREATE TABLE skus (sku TEXT PRIMARY KEY, category TEXT NOT NULL, price INTEGER NOT NULL) WITHOUT ROWID;

BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
INSERT INTO customers
SELECT i,
       'cust-' || printf('%05d', i) || '-' || substr('abcdefghijklmnopqrstuvwxyz', 1 + (i * 7) % 26, 1 + i % 11),
       'region-' || (i * 31 % 17),
       i % 5
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
INSERT INTO skus SELECT 'sku-' || printf('%04d', i), 'cat-' || (i % 23), 100 + (i * 37) % 9900 FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120000)
INSERT INTO orders
SELECT i,
       1 + (i * 7919) % 10000,
       1 + (i * 104729) % 100000,
       'sku-' || printf('%04d', 1 + (i * 613) % 500),
       CASE WHEN i % 3 = 0 THEN NULL ELSE hex(zeroblob(i % 64)) || '/' || (i * i % 1000003) END
FROM n;
COMMIT;

CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX orders_sku_amount ON orders(sku, amount);
CREATE INDEX customers_region ON customers(region, tier);

SELECT 'counts', (SELECT count(*) FROM customers), (SELECT count(*) FROM orders), (SELECT count(*) FROM skus);

-- joins + group by
SELECT 'region', c.region, count(*), sum(o.amount), max(o.amount), round(avg(o.amount), 3)
FROM orders o JOIN customers c ON c.id = o.customer_id
GROUP BY c.region ORDER BY c.region;

SELECT 'category', s.category, count(*), sum(o.amount * s.price) % 1000000007
FROM orders o JOIN skus s ON s.sku = o.sku
GROUP BY s.category ORDER BY 4 DESC, 2 LIMIT 10;

SELECT 'top', c.name, t.total FROM
  (SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id ORDER BY total DESC, customer_id LIMIT 5) t
  JOIN customers c ON c.id = t.customer_id ORDER BY t.total DESC, c.id;

-- window functions and string aggregation
SELECT 'window', sum(r) FROM (
  SELECT rank() OVER (PARTITION BY customer_id ORDER BY amount DESC, id) AS r FROM orders WHERE customer_id <= 2000);
SELECT 'concat', length(group_concat(name, ',')), substr(group_concat(name, ','), 1, 60)
FROM (SELECT name FROM customers WHERE tier = 3 ORDER BY name);

-- updates / deletes
BEGIN;
UPDATE orders SET amount = amount * 2, note = coalesce(note, 'was-null-' || id) WHERE id % 7 = 0;
DELETE FROM orders WHERE customer_id IN (SELECT id FROM customers WHERE tier = 4 AND region = 'region-3');
UPDATE customers SET name = upper(name) || '-' || length(name) WHERE id % 13 = 0;
DELETE FROM orders WHERE amount > 150000;
COMMIT;

SELECT 'after', count(*), sum(amount), sum(length(note)), count(note) FROM orders;
SELECT 'upper', count(*) FROM customers WHERE name GLOB 'CUST-*';

-- a large sort without an index and a self join
SELECT 'sorted', sum(rn * amount) % 1000000007 FROM (
  SELECT row_number() OVER (ORDER BY note, amount, id) AS rn, amount FROM orders);
SELECT 'selfjoin', count(*) FROM orders a JOIN orders b ON a.sku = b.sku AND a.amount = b.amount AND a.id < b.id;

-- many groups, distinct, temp b-trees, an in-memory attached database
SELECT 'distinct', count(DISTINCT note || sku), count(DISTINCT amount % 9973) FROM orders;
SELECT 'groups', count(*), sum(c * c) % 1000000007 FROM (SELECT count(*) AS c FROM orders GROUP BY sku, amount / 100);
ATTACH ':memory:' AS mem;
CREATE TABLE mem.words AS
  WITH RECURSIVE w(i, s) AS (SELECT 1, 'a' UNION ALL SELECT i + 1, substr(s || char(97 + i * 7 % 26), -40) FROM w WHERE i < 100000)
  SELECT i, s AS w, printf('%06d-%s-%s', i * 7919 % 50000, substr('abcdefghijklmnopqrstuvwxyz0123456789', 1 + i * 7919 % 50000 % 13, 5 + i * 7919 % 50000 % 17), hex(i * 7919 % 50000)) AS s FROM w;
CREATE INDEX mem.words_s ON words(s);
SELECT 'mem', count(*), count(DISTINCT s), max(s), min(s), sum(length(w)) FROM mem.words;
SELECT 'memjoin', count(*) FROM mem.words a JOIN mem.words b ON b.s = a.s AND b.i > a.i;
DETACH mem;

-- rebuild everything
CREATE TABLE orders_copy AS SELECT * FROM orders ORDER BY amount DESC;
DROP TABLE orders_copy;
PRAGMA wal_checkpoint(TRUNCATE);
VACUUM;
REINDEX;
ANALYZE;
PRAGMA integrity_check;
PRAGMA foreign_key_check;
SELECT 'final', count(*), total(amount) FROM orders;
