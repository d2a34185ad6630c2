"""Dump clean-up, database properties and locale mapping: pure logic, on dumps captured from a real
PostgreSQL 11 Single Server by pg_dump 18 (tests/logs) and on hand-made edge cases."""
import pytest

from azext_pgdump.pg import dbprops, dumpclean, locales

LIST = """;
; Archive created at 2026-11-24 12:54:50 UTC
;
7; 2615 2200 SCHEMA - public azure_superuser
3037; 0 0 ACL - SCHEMA public azure_superuser
9; 2615 16522 SCHEMA - shop shop_owner
3038; 0 0 ACL - SCHEMA shop shop_owner
2; 3079 16394 EXTENSION - citext 
199; 1259 16499 TABLE public product shop_owner
2879; 2604 16502 DEFAULT public product id shop_owner
3020; 0 16499 TABLE DATA public product shop_owner
1783; 826 16523 DEFAULT ACL shop DEFAULT PRIVILEGES FOR TABLES shop_owner
1785; 826 16525 DEFAULT ACL - DEFAULT PRIVILEGES FOR TABLES azure_superuser
"""

PLAIN = b"""--
-- Name: public; Type: SCHEMA; Schema: -; Owner: azure_superuser
--

-- *not* creating schema, since initdb creates it


ALTER SCHEMA public OWNER TO azure_superuser;

--
-- Name: shop; Type: SCHEMA; Schema: -; Owner: shop_owner
--

CREATE SCHEMA shop;


ALTER SCHEMA shop OWNER TO shop_owner;

--
-- Name: f(); Type: FUNCTION; Schema: shop; Owner: shop_owner
--

CREATE FUNCTION shop.f() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
ALTER TABLE shop.t OWNER TO shop_owner;
END $$;


ALTER FUNCTION shop.f() OWNER TO shop_owner;

SET default_tablespace = '';

--
-- Data for Name: t; Type: TABLE DATA; Schema: shop; Owner: shop_writer
--

COPY shop.t (id, body) FROM stdin;
1\t-- Name: x; Type: SCHEMA; Schema: -; Owner: azure_superuser
2\tALTER TABLE t OWNER TO x;
3\ta\\\\.
\\.


--
-- Name: SCHEMA shop; Type: ACL; Schema: -; Owner: shop_owner
--

GRANT ALL ON SCHEMA shop TO shop_writer;


--
-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: -; Owner: azure_superuser
--

ALTER DEFAULT PRIVILEGES FOR ROLE azure_superuser GRANT ALL ON TABLES TO PUBLIC;


--
-- PostgreSQL database dump complete
--

\\unrestrict abc
"""


def test_list_leaves_out_service_objects_and_puts_schemas_first():
    cleaned = dumpclean.clean_list(LIST)
    assert cleaned.left_out == ["SCHEMA public (owner azure_superuser)",
                                "DEFAULT ACL DEFAULT PRIVILEGES FOR TABLES (owner azure_superuser)"]
    assert cleaned.schemas.splitlines() == ["3037; 0 0 ACL - SCHEMA public azure_superuser",
                                            "9; 2615 16522 SCHEMA - shop shop_owner",
                                            "3038; 0 0 ACL - SCHEMA shop shop_owner"]
    rest = cleaned.rest.splitlines()
    assert rest[0].startswith("2; 3079") and "DEFAULT PRIVILEGES FOR TABLES shop_owner" in rest[-1]
    assert len(rest) == 5


def run_filter(data: bytes, size: int):
    f = dumpclean.PlainFilter()
    out = b"".join(f.feed(data[i:i + size]) for i in range(0, len(data), size)) + f.close()
    return out, f.left_out


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
def test_plain_filter_is_the_same_whatever_the_chunks(size):
    assert run_filter(PLAIN, size) == run_filter(PLAIN, len(PLAIN))


def test_plain_filter_moves_owners_last_but_never_touches_bodies_or_data():
    out, left_out = run_filter(PLAIN, 5)
    text = out.decode()
    assert left_out == ["SCHEMA public (owner azure_superuser)",
                        "DEFAULT ACL DEFAULT PRIVILEGES FOR TABLES (owner azure_superuser)"]
    assert "azure_superuser" not in text.split("COPY")[0] and "FOR ROLE azure_superuser" not in text
    body = text[text.index("CREATE FUNCTION"):text.index("END $$;")]
    assert "ALTER TABLE shop.t OWNER TO shop_owner;" in body  # inside a function body: left alone
    copy = text[text.index("COPY"):text.index("\\.\n") + 3]
    assert "Owner: azure_superuser" in copy and "ALTER TABLE t OWNER TO x;" in copy and "a\\\\." in copy
    tail = text[text.index("-- Owners, set after the schemas' GRANTs"):]
    assert tail.splitlines()[1:] == ["ALTER SCHEMA shop OWNER TO shop_owner;", "ALTER FUNCTION shop.f() OWNER TO "
                                     "shop_owner;"]
    assert text.index("GRANT ALL ON SCHEMA shop") < text.index("ALTER SCHEMA shop OWNER")
    assert "\\unrestrict abc" in text


def test_plain_filter_sets_owners_before_the_acl_of_any_other_object():
    """A table owned by pg_database_owner with DELETE revoked from its owner: the REVOKE/GRANT must come after
    ALTER TABLE ... OWNER, or the owner change merges the old owner's full rights back in."""
    acl = (b"--\n-- Name: TABLE t; Type: ACL; Schema: shop; Owner: pg_database_owner\n--\n\n"
           b"REVOKE ALL ON TABLE shop.t FROM pg_database_owner;\n"
           b"GRANT SELECT ON TABLE shop.t TO pg_database_owner;\n\n\n")
    at = PLAIN.index(b"--\n-- Name: DEFAULT PRIVILEGES")
    text = run_filter(PLAIN[:at] + acl + PLAIN[at:], 7)[0].decode()
    assert text.index("GRANT ALL ON SCHEMA shop") < text.index("ALTER SCHEMA shop OWNER") \
        < text.index("ALTER FUNCTION shop.f() OWNER") < text.index("REVOKE ALL ON TABLE shop.t")
    assert text.count("-- Owners, set after") == 1


def test_database_properties_become_sql():
    props = dbprops.DatabaseProps(
        acl=[["GRANT", "shop_reader", "CONNECT", False], ["GRANT", "azure_pg_admin", "CONNECT", False],
             ["REVOKE", "", "CONNECT", False], ["REVOKE", "", "TEMPORARY", False]],
        settings=[["", 'search_path="$user", public, "odd, name"'], ["", "work_mem=8MB"],
                  ["shop_reader", "statement_timeout=30s"], ["azure_superuser", "work_mem=1MB"]],
        comment="it's the shop")
    sql, left_out = dbprops.statements(props, 'my "db"')
    assert sql == ['GRANT CONNECT ON DATABASE "my ""db""" TO "shop_reader"',
                   'REVOKE CONNECT ON DATABASE "my ""db""" FROM PUBLIC',
                   'REVOKE TEMPORARY ON DATABASE "my ""db""" FROM PUBLIC',
                   'ALTER DATABASE "my ""db""" SET "search_path" TO \'$user\', \'public\', \'odd, name\'',
                   'ALTER DATABASE "my ""db""" SET "work_mem" TO \'8MB\'',
                   'ALTER ROLE "shop_reader" IN DATABASE "my ""db""" SET "statement_timeout" TO \'30s\'',
                   'COMMENT ON DATABASE "my ""db""" IS \'it\'\'s the shop\'']
    assert len(left_out) == 2 and all("azure_" in x for x in left_out)
    assert dbprops.statements(props, "db", acl=False)[0][0].startswith("ALTER DATABASE")


def test_windows_locales_map_to_the_targets_utf8_locale():
    available = {"C", "POSIX", "C.utf8", "en_US.utf8", "de_DE.UTF-8"}
    assert locales.target_locale("English_United States.1252", available, {}) == "en_US.utf8"
    assert locales.target_locale("German_Germany.1252", available, {}) == "de_DE.UTF-8"
    assert locales.target_locale("en_US.UTF-8", available, {}) == "en_US.UTF-8"  # the same locale, kept
    assert locales.target_locale("French_France.1252", available, {}) is None    # the target lacks fr_FR
    assert locales.target_locale("Klingon_Qo'noS.1252", available, {}) is None
    assert locales.target_locale("French_France.1252", available, {"French_France.1252": "C.utf8"}) == "C.utf8"
    assert locales.windows_equivalent("Chinese (Simplified)_People's Republic of China.936") == "zh_CN.utf8"
    assert locales.parse_overrides(["a=b=c"]) == {"a": "b=c"}
    with pytest.raises(ValueError):
        locales.parse_overrides(["no-equals"])


def test_check_refuses_a_non_utf8_database_under_a_mapped_utf8_locale():
    from azext_pgdump.pg.catalog import Database
    from azext_pgdump.pg.preflight import collations
    win = "English_United States.1252"
    available = {"C", "POSIX", "en_US.utf8"}
    ok = collations([Database("a", "UTF8", win, win)], available, {})
    assert ok.status == "warn" and "en_US.utf8 instead of English_United States.1252" in ok.message
    bad = collations([Database("b", "WIN1252", win, win)], available, {})
    assert bad.status == "fail" and "b (WIN1252)" in bad.message and "'OLD=C'" in bad.fix
    assert collations([Database("b", "WIN1252", win, win)], available, {win: "C"}).status == "warn"


STATS_PLAIN = b"""--
-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: app
--

COPY public.t (id) FROM stdin;
1
\\.


--
-- Statistics for Name: t; Type: STATISTICS DATA; Schema: public; Owner: -
--

SELECT * FROM pg_catalog.pg_restore_relation_stats(
\t'version', '180006'::integer,
\t'relname', 't'
);


--
-- Name: t t_pkey; Type: CONSTRAINT; Schema: public; Owner: app
--

ALTER TABLE ONLY public.t
    ADD CONSTRAINT t_pkey PRIMARY KEY (id);
"""


def test_plain_filter_leaves_out_pg_dump_18_statistics_only_when_told():
    kept = dumpclean.PlainFilter()
    assert kept.feed(STATS_PLAIN) + kept.close() == STATS_PLAIN and kept.left_out == []
    dropped = dumpclean.PlainFilter(statistics=False)
    text = (dropped.feed(STATS_PLAIN) + dropped.close()).decode()
    assert "pg_restore_relation_stats" not in text and "Statistics for" not in text
    assert "COPY public.t" in text and "ADD CONSTRAINT t_pkey" in text
    assert dropped.left_out == ["STATISTICS DATA t (owner -)"]
    assert "older than PostgreSQL 18" in dumpclean.reason(dropped.left_out[0])


def test_the_materialized_views_a_restore_refreshes_are_named_from_a_list_and_from_a_script():
    listing = "3021; 0 16600 MATERIALIZED VIEW DATA sales monthly app\n3022; 0 16601 TABLE DATA sales t app\n"
    assert dumpclean.clean_list(listing).refreshed == ["sales.monthly"]
    script = (b"--\n-- Name: monthly; Type: MATERIALIZED VIEW DATA; Schema: sales; Owner: app\n--\n\n"
              b"REFRESH MATERIALIZED VIEW sales.monthly;\n\n")
    plain = dumpclean.PlainFilter()
    plain.feed(script)
    plain.close()
    assert plain.refreshed == ["sales.monthly"]
    assert dumpclean.refreshed_views(["sales.monthly"])["refreshedViews"]["views"] == ["sales.monthly"]
    assert dumpclean.refreshed_views([]) == {}
