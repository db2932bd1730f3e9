-- Share of people earning more than 50K per education level, from the synthetic table:
-- a query an analyst runs without access to the real rows.
select
    education,
    count(*) as people,
    avg(case when income = '>50K' then 1.0 else 0.0 end) as high_income_share
from {{ source('dpsynth', 'adult') }}
group by education
