//! SQLMesh macros on real data: `@DEF` in models and in macros/, the built-in functions, and Python macros
//! refused at load with their location.

use crate::common::{EXEC, Scratch, stderr};

#[test]
fn macros_render_and_build() {
    let s = Scratch::init();
    s.write(
        "macros/helpers.sql",
        "-- project-wide macros\n@DEF(to_cents, x -> CAST(ROUND(x * 100) AS BIGINT));\n@DEF(kinds, ['even', 'odd']);\n",
    );
    s.write(
        "models/seed_model.sql",
        "MODEL (\n  name demo.seed_model,\n  kind SEED (path '../seeds/seed_data.csv'),\n  columns (id INT, item_id INT, event_date DATE)\n);\n",
    );
    s.write(
        "models/macro_model.sql",
        "MODEL (name demo.macro_model, kind FULL);\n\
         @DEF(min_id, 2);\n\
         WITH spine AS (@DATE_SPINE('day', '2020-01-01', '2020-01-03')),\n\
         latest AS (@DEDUPLICATE(demo.seed_model, partition_by := [item_id], order_by := ['id DESC']))\n\
         SELECT\n  l.item_id,\n  @STAR(demo.seed_model, alias := 'l', exclude := [item_id, event_date], prefix := 'last_'),\n  \
         @EACH(@kinds, k -> COUNT(*) FILTER (WHERE s.id % 2 = @IF(@k = 'even', 0, 1)) AS n_@{k}),\n  \
         @to_cents(@SAFE_DIV(MAX(s.id), 3)) AS cents,\n  @GENERATE_SURROGATE_KEY(l.item_id) AS key,\n  \
         (SELECT count(*) FROM spine) AS days,\n  @EVAL(40 + 2) AS answer\n\
         FROM latest AS l\nJOIN demo.seed_model AS s ON s.item_id = l.item_id\n\
         WHERE @AND(s.id >= @min_id, @REDUCE([s.id > 0, s.id < 100], (a, b) -> a AND b))\n\
         GROUP BY l.item_id, l.id\n",
    );
    s.apply(EXEC);
    assert_eq!(
        s.csv("select item_id, last_id, n_even, n_odd, cents, days, answer, length(key) as key_len from demo.macro_model order by item_id"),
        // Item 2's only order (id 1) is below @min_id.
        "item_id,last_id,n_even,n_odd,cents,days,answer,key_len\n1,7,3,2,233,3,42,32\n3,3,0,1,100,3,42,32\n"
    );
}

#[test]
fn pivot_haversine_and_resolve_template_on_data() {
    let s = Scratch::init();
    s.write(
        "models/rides.sql",
        "MODEL (name demo.rides, kind FULL);\n\
         SELECT * FROM (VALUES (1, 'done', 40.7128, -74.0060, 51.5074, -0.1278), (1, 'cancelled', 0, 0, 0, 0), \
         (2, 'done', 0, 0, 0, 1)) AS v(day, status, a_lat, a_lon, b_lat, b_lon)\n",
    );
    s.write(
        "models/ride_stats.sql",
        "MODEL (name demo.ride_stats, kind FULL);\n\
         SELECT\n  day,\n  @PIVOT(status, ['done', 'cancelled'], prefix := 'n_', quote := TRUE),\n  \
         ROUND(MAX(@HAVERSINE_DISTANCE(a_lat, a_lon, b_lat, b_lon, unit := 'km')), 1) AS km,\n  \
         @RESOLVE_TEMPLATE('@{schema_name}/@{table_name}') LIKE 'lake__demo/demo__ride_stats__%' AS located\n\
         FROM demo.rides\nGROUP BY day\n",
    );
    let out = s.apply(EXEC);
    assert!(out.status.success(), "{}", stderr(&out));
    // SQLMesh's column names (the value as written, quotes included) and its 3961-mile Earth radius:
    // one degree of longitude on the equator is 2 * pi * 3961 / 360 miles = 111.3 km.
    assert_eq!(
        s.csv("select day, \"n_'done'\", \"n_'cancelled'\", km, located from demo.ride_stats order by day"),
        "day,n_'done',n_'cancelled',km,located\n1,1,1,5573.4,true\n2,1,0,111.3,true\n"
    );
}

/// The remaining built-ins on data: @FILTER, @SQL, @OR, @SAFE_ADD/@SAFE_SUB, @VAR, @BLUEPRINT_VAR, @IF, and
/// the @model_kind_name variable.
#[test]
fn more_builtins_on_data() {
    let s = Scratch::init();
    let config = s.read("config.yaml");
    s.write(
        "config.yaml",
        &format!("{config}\nvariables:\n  min_item: 2\n"),
    );
    s.write(
        "models/more_macros.sql",
        "MODEL (name demo.more_macros, kind FULL);\n\
         SELECT\n  v.id,\n  @SAFE_ADD(v.a, v.b) AS total,\n  @SAFE_SUB(v.a, v.b) AS diff,\n  \
         @EACH(@FILTER([1, 2, 3], n -> n >= @VAR('min_item', 0)), n -> v.id * n AS times_@n),\n  \
         @SQL('@BLUEPRINT_VAR(''region'', ''eu'')') AS region,\n  @IF(@VAR('min_item') > 1, 'strict', 'lax') AS mode,\n  @model_kind_name AS kind\n\
         FROM (VALUES (1, 10, NULL), (2, NULL, NULL), (3, 4, 1)) AS v(id, a, b)\n\
         WHERE @OR(v.id = 1, NULL, v.id = 3)\n",
    );
    let out = s.apply(EXEC);
    assert!(out.status.success(), "{}", stderr(&out));
    // @SAFE_ADD/@SAFE_SUB treat NULL as 0 unless every value is NULL; @FILTER kept 2 and 3.
    assert_eq!(
        s.csv("select * from demo.more_macros order by id"),
        "id,total,diff,times_2,times_3,region,mode,kind\n1,10,10,2,3,eu,strict,FULL\n3,5,3,6,9,eu,strict,FULL\n"
    );
}

/// One file, several models: each `blueprints` entry makes a model whose name and query use its values;
/// changing one entry changes only that model.
#[test]
fn blueprints_make_one_model_per_entry() {
    let s = Scratch::init();
    let model = |us_minimum: u32| {
        format!(
            "MODEL (\n  name @{{region}}.orders,\n  kind FULL,\n  \
             blueprints ((region := 'eu', minimum := 1), (region := 'us', minimum := {us_minimum}))\n);\n\n\
             SELECT @region AS region, item_id FROM demo.seed_model WHERE item_id > @BLUEPRINT_VAR('minimum')\n"
        )
    };
    s.write("models/regional.sql", &model(2));
    // SQLMesh's sushi example: the whole name is a blueprint variable holding an identifier.
    s.write(
        "models/by_name.sql",
        "MODEL (\n  name @name,\n  kind FULL,\n  blueprints (\n    (name := demo.odd_items, parity := 1,),\n    \
         (name := demo.even_items, parity := 0)\n  )\n);\n\nSELECT count(*) AS n FROM demo.seed_model WHERE id % 2 = @parity;\n",
    );
    let out = s.apply(EXEC);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select region, count(*) as n from (select * from eu.orders union all select * from us.orders) group by all order by all"),
        "region,n\neu,2\nus,1\n"
    );
    assert_eq!(
        s.csv("select o.n as odd, e.n as even from demo.odd_items as o, demo.even_items as e"),
        "odd,even\n4,3\n"
    );
    s.write("models/regional.sql", &model(1));
    let plan = s
        .lake()
        .args(["plan", "--execution-time", EXEC])
        .output()
        .unwrap();
    let text = crate::common::stdout(&plan);
    assert!(text.contains("us.orders"), "{text}");
    assert!(
        !text.contains("eu.orders"),
        "only the changed blueprint: {text}"
    );

    s.write(
        "models/regional.sql",
        "MODEL (name @{region}.orders, kind FULL, blueprints ((region := 'eu'), 'us'));\nSELECT 1 AS x\n",
    );
    let out = s.lake().arg("plan").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("a blueprint binds variables"),
        "{}",
        stderr(&out)
    );
}

/// `@STAR` and `@UNION` over models that declare no columns: lake infers them from the models' queries
/// (DuckDB's binder, nothing run), through a chain where the upstream model itself uses `@STAR`.
#[test]
fn star_and_union_take_columns_from_model_queries() {
    let s = Scratch::init();
    s.write(
        "models/prices.sql",
        "MODEL (name demo.prices, kind FULL);\nSELECT item_id, 2.5::DECIMAL(4, 1) AS price, 'eur' AS currency FROM demo.seed_model\n",
    );
    s.write(
        "models/more_prices.sql",
        "MODEL (name demo.more_prices, kind FULL);\nSELECT 'usd' AS currency, 9 AS item_id, 1.0 AS price, TRUE AS promo\n",
    );
    s.write(
        "models/priced.sql",
        "MODEL (name demo.priced, kind FULL);\nSELECT @STAR(demo.prices, exclude := [currency], prefix := 'p_') FROM demo.prices\n",
    );
    s.write(
        "models/repriced.sql",
        "MODEL (name demo.repriced, kind VIEW);\nSELECT DISTINCT @STAR(demo.priced) FROM demo.priced\n",
    );
    s.write(
        "models/all_prices.sql",
        "MODEL (name demo.all_prices, kind VIEW);\nSELECT * FROM (@UNION('all', demo.prices, demo.more_prices)) AS u\n",
    );
    let out = s.apply(EXEC);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.csv("select * from demo.repriced order by all"),
        "p_item_id,p_price\n1,2.5\n2,2.5\n3,2.5\n"
    );
    // The columns both have, in the first one's order, cast to the first one's types.
    assert_eq!(
        s.csv("select * from demo.all_prices order by item_id limit 2 offset 6"),
        "item_id,price,currency\n3,2.5,eur\n9,1.0,usd\n"
    );
}

#[test]
fn a_python_macro_fails_at_load_with_its_location() {
    let s = Scratch::init();
    s.write(
        "macros/to_cents.py",
        "from sqlmesh import macro\n\n@macro()\ndef to_cents(evaluator, column):\n    return f\"{column} * 100\"\n",
    );
    let model = s.read("models/full_model.sql").replace(
        "COUNT(DISTINCT id) AS num_orders",
        "@to_cents(COUNT(DISTINCT id)) AS num_orders",
    );
    s.write("models/full_model.sql", &model);
    let out = s.lake().args(["plan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("models/full_model.sql:11:3"), "{err}");
    assert!(
        err.contains("@to_cents is a Python macro (macros/to_cents.py)"),
        "{err}"
    );
    assert!(err.contains("rewrite it as a SQL macro"), "{err}");
}

#[test]
fn a_bad_definition_is_located_in_its_file() {
    let s = Scratch::init();
    s.write("macros/bad.sql", "@DEF(oops);\n");
    let out = s.lake().args(["plan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("macros/bad.sql:1:1"), "{err}");
    assert!(
        err.contains("@DEF takes a name and a value, got 1 argument(s)"),
        "{err}"
    );
}

#[test]
fn jinja_blocks_render_with_variables_loops_and_project_macros() {
    let s = Scratch::init();
    s.write(
        "config.yaml",
        &format!("{}\nvariables:\n  min_id: 2\n", s.read("config.yaml")),
    );
    s.write(
        "macros/jinja_helpers.sql",
        "{% macro times(column, n) %}{{ column }} * {{ n }}{% endmacro %}\n",
    );
    s.write(
        "models/jinja_model.sql",
        "MODEL (name demo.jinja_model, kind FULL);\n\
         JINJA_STATEMENT_BEGIN;\nSET threads = {{ 1 + 1 }};\nJINJA_END;\n\
         JINJA_QUERY_BEGIN;\nSELECT\n  item_id,\n{% for k in ['a', 'b'] %}  COUNT(*) AS n_{{ k }},\n{% endfor %}  \
         SUM({{ times('id', 10) }}) AS tenfold,\n  '{{ execution_ds }}' AS run_day\n\
         FROM demo.seed_model\nWHERE id >= {{ var('min_id') }}\nGROUP BY item_id\nJINJA_END;\n",
    );
    s.apply(EXEC);
    assert_eq!(
        s.csv("select * from demo.jinja_model order by item_id"),
        "item_id,n_a,n_b,tenfold,run_day\n1,5,5,240,2024-06-01\n3,1,1,30,2024-06-01\n"
    );

    s.write(
        "models/jinja_model.sql",
        "MODEL (name demo.jinja_model, kind FULL);\nJINJA_QUERY_BEGIN;\nSELECT 1 AS a\nFROM {{ no_such_variable }}\nJINJA_END;\n",
    );
    let out = s.lake().args(["plan"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("models/jinja_model.sql:4:1: cannot render the Jinja block"),
        "{err}"
    );
}
