-- SQL macros every model can use: @DEF(name, value) or @DEF(name, (args) -> expression).
@DEF(is_positive, x -> x > 0);
