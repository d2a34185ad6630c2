-- Roles of an application that owns its own database, as a Single Server admin made them.
-- Run as the server admin (CREATEROLE, CREATEDB, not a superuser).
CREATE ROLE shop_owner LOGIN PASSWORD 'shop-owner-secret-1';
CREATE ROLE shop_writer NOLOGIN;
CREATE ROLE shop_reader LOGIN PASSWORD 'shop-reader-secret-1';
-- The admin can act as the application's roles (it made the database for them) ...
GRANT shop_owner TO CURRENT_USER;
GRANT shop_writer TO CURRENT_USER;
CREATE DATABASE shop OWNER shop_owner;
REVOKE ALL ON DATABASE shop FROM PUBLIC;
GRANT CONNECT ON DATABASE shop TO shop_reader;
GRANT CONNECT, TEMPORARY ON DATABASE shop TO shop_writer;
ALTER DATABASE shop SET search_path = "$user", public, shop;
ALTER DATABASE shop SET work_mem = '8MB';
ALTER ROLE shop_reader IN DATABASE shop SET statement_timeout = '30s';
COMMENT ON DATABASE shop IS 'The shop''s data; owned by the application';
