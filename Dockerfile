FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN SECRET_KEY=build-only python manage.py collectstatic --no-input -v0
EXPOSE 8000
# Worker model and timeouts: gunicorn.conf.py (the same command line as tower.web_command).
CMD ["gunicorn", "--bind", "0.0.0.0:8000"]
