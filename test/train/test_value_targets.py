"""Value targets: discounted returns from one terminal reward, rescaled to [-1, 1]; the reward rule per label."""
from __future__ import annotations

import numpy as np
import pytest

from cosmos_policy_ros.train.value_targets import episode_returns, terminal_reward


def test_returns_discount_back_from_the_last_step_and_rescale_to_minus_one_one():
    np.testing.assert_allclose(episode_returns(3, 1.0, 0.5), [2 * 0.25 - 1, 2 * 0.5 - 1, 1.0])
    # rescaled by R, so a scored success has the same targets as a full one (upstream dataset_common)
    np.testing.assert_allclose(episode_returns(3, 0.7, 0.5), episode_returns(3, 1.0, 0.5), rtol=1e-6)
    assert episode_returns(3, 1.0, 0.5).dtype == np.float32


def test_a_failure_is_minus_one_at_every_step():
    assert (episode_returns(5, 0.0, 0.998) == -1.0).all()


@pytest.mark.parametrize("success, score, reward", [(True, None, 1.0), (True, 0.7, 0.7), (False, None, 0.0),
                                                    (False, 0.7, 0.0)])
def test_terminal_reward_is_one_or_the_score_for_a_success_and_zero_for_a_failure(success, score, reward):
    assert terminal_reward(success, score) == pytest.approx(reward)
