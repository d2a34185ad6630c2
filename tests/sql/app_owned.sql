-- The application's database `shop`, built by its own roles (run as the admin, a member of them).
SET ROLE shop_owner;
CREATE TABLE public.product (id serial PRIMARY KEY, sku citext UNIQUE NOT NULL, name text NOT NULL,
                             price numeric(10,2) NOT NULL CHECK (price >= 0));
CREATE TABLE public.stock (product_id int PRIMARY KEY REFERENCES public.product, qty int NOT NULL DEFAULT 0);
CREATE SCHEMA shop;
GRANT USAGE ON SCHEMA shop TO shop_writer, shop_reader;
GRANT CREATE ON SCHEMA shop TO shop_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA shop GRANT SELECT ON TABLES TO shop_reader;
ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO shop_reader;
CREATE TABLE shop.basket (id bigserial PRIMARY KEY, product_id int REFERENCES public.product, qty int NOT NULL);
CREATE VIEW shop.catalogue AS SELECT p.sku, p.name, p.price, s.qty FROM public.product p JOIN public.stock s
    ON s.product_id = p.id;
CREATE FUNCTION shop.price_with_tax(p numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT p * 1.2';
INSERT INTO public.product (sku, name, price) SELECT 'SKU-' || g, 'Product ' || g, g * 1.5
    FROM generate_series(1, 500) g;
INSERT INTO public.stock SELECT id, id % 17 FROM public.product;
INSERT INTO shop.basket (product_id, qty) SELECT 1 + g % 500, 1 + g % 3 FROM generate_series(1, 2000) g;
SELECT lo_from_bytea(0, convert_to('invoice scan ü', 'UTF8'));
RESET ROLE;
SET ROLE shop_writer;
CREATE TABLE shop.order_log (id bigserial PRIMARY KEY, basket_id bigint, at timestamptz DEFAULT now(),
                             note text);
INSERT INTO shop.order_log (basket_id, note) SELECT g, 'note ' || g FROM generate_series(1, 300) g;
GRANT SELECT ON shop.order_log TO shop_reader;
RESET ROLE;
