"""How to Whale: learn Docker in the browser, with nothing to install."""
from setuptools import find_packages, setup

setup(
    name="howtowhale",
    version="0.1.0",
    description="A Docker classroom on Jupyter: a docker kernel wired to each learner's engine",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["whale_kernel", "whale_kernel.*", "whale_extension",
                                    "whale_extension.*", "whale_hub", "whale_hub.*"]),
    package_data={"whale_kernel": ["kernelspec/*"]},
    data_files=[
        ("share/jupyter/kernels/docker", ["whale_kernel/kernelspec/kernel.json",
                                          "whale_kernel/kernelspec/logo-64x64.png"]),
    ],
    install_requires=[
        "bash_kernel==0.10.0",
        "ipykernel>=6.20",
        "jupyter_client>=8",
        "pexpect>=4.8",
        "cryptography>=41",
        "docker>=7",
        "notebook>=7",
        "jupyter_server>=2",
        "nbformat>=5",
    ],
    extras_require={
        "test": ["pytest>=8", "wheel", "setuptools", "pytest-timeout", "pytest-jupyter[server]>=0.7", "nbval>=0.11"],
    },
    entry_points={"console_scripts": ["whale = whale_hub.cli:main"]},
    classifiers=["Framework :: Jupyter", "Programming Language :: Python :: 3"],
)
