"""The API's page-number pagination (its own module: settings import it while DRF itself is loading)."""

from django.conf import settings
from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """`?page=` and `?page_size=` (up to PARLEY_API_MAX_PAGE_SIZE; larger sizes are cut down to it)."""

    page_size_query_param = "page_size"
    max_page_size = settings.PARLEY_API_MAX_PAGE_SIZE
