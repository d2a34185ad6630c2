#!/usr/bin/env python
"""Packaging of the `pgdump` Azure CLI extension (az postgres dumprestore)."""
from setuptools import find_packages, setup

VERSION = '0.5.0'

CLASSIFIERS = [
    'Development Status :: 4 - Beta',
    'Intended Audience :: Developers',
    'Intended Audience :: System Administrators',
    'Programming Language :: Python',
    'Programming Language :: Python :: 3',
    'License :: OSI Approved :: MIT License',
]

# azure-* packages are provided by azure-cli itself and must not be declared here.
DEPENDENCIES = ['psycopg[binary]>=3.1']

with open('README.md', 'r', encoding='utf-8') as f:
    README = f.read()

setup(
    name='pgdump',
    version=VERSION,
    description='az postgres dumprestore: migrate Azure Database for PostgreSQL with pg_dump and pg_restore',
    long_description=README,
    long_description_content_type='text/markdown',
    license='MIT',
    author='azext_pgdump team',
    classifiers=CLASSIFIERS,
    packages=find_packages(exclude=['tests', 'tests.*', 'scripts']),
    install_requires=DEPENDENCIES,
    package_data={'azext_pgdump': ['azext_metadata.json']},
)
