import pytest

from .helpers import STUDIES, load_study


@pytest.fixture(params=STUDIES)
def study(request):
    return load_study(request.param)
